# Four processes each allocate up to their own address-space limit, together more than the
# job's memory cgroup allows: the OOM killer must stop some of them, not the machine.
import os, signal
children = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        blocks = []
        try:
            while True:
                blocks.append(bytearray(16 << 20))
        except MemoryError:
            pass
        os._exit(0)
    children.append(pid)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
killed = sum(os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL for s in statuses)
print("killed" if killed else "all finished")
