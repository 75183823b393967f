# Raise the recursion limit and overflow the C stack: every level recurses through C (map/list).
import sys
sys.setrecursionlimit(10 ** 6)

def f(n):
    return list(map(f, [n + 1]))

f(0)
