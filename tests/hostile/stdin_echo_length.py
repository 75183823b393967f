import sys
data = sys.stdin.buffer.read()
print(len(data))
