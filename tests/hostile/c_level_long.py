# One C call that takes minutes and cannot be interrupted by Python-level signals.
x = 10 ** (10 ** 8)
print(len(str(x)))
