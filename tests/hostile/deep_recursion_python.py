# Deep pure-Python recursion under a raised limit ends in RecursionError.
import sys
sys.setrecursionlimit(10 ** 5)

def f(n):
    return f(n + 1) + 1

f(0)
