"""Optuna's RDBStorage as a work queue: WORKERS processes share one study on PostgreSQL and
run TRIALS trials of a trivial objective in all (RandomSampler: no sampling cost beyond a
draw). Prints one JSON object: trials per second from the first trial started to the last
finished (process start-up and imports excluded). Used by `cargo xtask bench --queue`."""

import argparse
import json
import multiprocessing
import time


def work(url, study_name, trials, barrier, times):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name,
        storage=url,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    barrier.wait()
    start = time.perf_counter()
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0) ** 2, n_trials=trials)
    times.put((start, time.perf_counter()))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"bench-{time.time_ns()}"
    optuna.create_study(study_name=name, storage=args.url)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(args.workers)
    times = context.Queue()
    share = args.trials // args.workers
    processes = [
        context.Process(target=work, args=(args.url, name, share, barrier, times))
        for _ in range(args.workers)
    ]
    for process in processes:
        process.start()
    spans = [times.get() for _ in processes]
    for process in processes:
        process.join()
        assert process.exitcode == 0
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    trials = share * args.workers
    study = optuna.load_study(study_name=name, storage=args.url)
    assert len(study.trials) == trials, len(study.trials)
    print(
        json.dumps(
            {
                "trials": trials,
                "workers": args.workers,
                "seconds": seconds,
                "trials_per_second": trials / seconds,
                "optuna": optuna.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
