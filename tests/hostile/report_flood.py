import os
chunk = b"r" * (1 << 20)
for _ in range(100):
    os.write(3, chunk)
print("done")
