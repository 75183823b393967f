# Allocate without bound; RLIMIT_AS turns this into MemoryError.
blocks = []
while True:
    blocks.append(bytearray(64 << 20))
