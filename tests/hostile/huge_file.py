# Write one file beyond RLIMIT_FSIZE.
import errno
try:
    with open("big.bin", "wb") as f:
        for _ in range(100):
            f.write(b"\0" * (1 << 20))
    print("wrote 100 MB")
except OSError as exc:
    print("stopped", errno.errorcode[exc.errno])
