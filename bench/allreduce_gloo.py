"""PyTorch Gloo all_reduce on loopback, for bench/allreduce.sh: the same sizes and world sizes
as the Rust ring, timed the same way (one warm-up round, median of three, each round as long
as its slowest rank). Prints one line per case: ranks, MiB, seconds."""
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank_main(rank, world, mib, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    data = torch.full(((mib << 20) // 4,), float(rank))
    times = []
    for _ in range(4):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(data)
        times.append(time.perf_counter() - start)
    out.put((rank, times[1:]))
    dist.destroy_process_group()


def main():
    sizes = [int(s) for s in sys.argv[1].split(",")]
    worlds = [int(w) for w in sys.argv[2].split(",")]
    port = 29500 + os.getpid() % 1000
    ctx = mp.get_context("spawn")
    for world in worlds:
        for mib in sizes:
            port += 1
            out = ctx.Queue()
            procs = [ctx.Process(target=rank_main, args=(r, world, mib, port, out)) for r in range(world)]
            for p in procs:
                p.start()
            per_rank = [out.get() for _ in procs]
            for p in procs:
                p.join()
            rounds = sorted(max(t[i] for _, t in per_rank) for i in range(3))
            print(world, mib, rounds[1], flush=True)


if __name__ == "__main__":
    main()
