# Create small files until the filesystem refuses (or 20000).
n = 0
try:
    for n in range(20000):
        with open(f"f{n}", "w") as f:
            f.write("x" * 4096)
    print("created all")
except OSError as exc:
    print("stopped", type(exc).__name__)
