# Four processes each allocate up to their own address-space limit, together more than the
# job's memory cgroup allows: the OOM killer must stop some of them, not the machine. Each holds
# what it got for a while, so the four overlap however the scheduler orders them (without the
# hold, a child could exit before the next one grew, and the test raced).
import os, signal, time
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
        time.sleep(2)
        os._exit(0)
    children.append(pid)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
killed = sum(os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL for s in statuses)
print("killed" if killed else "all finished")
