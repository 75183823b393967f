import os
chunk = b"e" * (1 << 20)
for _ in range(100):
    os.write(2, chunk)
print("done")
