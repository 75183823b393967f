import sys
chunk = "x" * (1 << 20)
for _ in range(100):
    sys.stdout.write(chunk)
print("done", file=sys.stderr)
