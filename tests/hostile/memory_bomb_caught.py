# Catch MemoryError and report it: the program survives the limit.
try:
    data = bytearray(8 << 30)
except MemoryError:
    print("MemoryError")
