"""Output directories: a run cut into shards, each written to its own part file.

`mtcnn detect INPUTS --out-dir DIR [--shard-size N]` writes

    DIR/_inputs.jsonl         the input list, one JSON line per entry, in order
    DIR/_manifest.json        what the run is: tool version, parameters, the
                              models' SHA-256, the input list's SHA-256, the
                              shard size and count
    DIR/part-00000.jsonl ...  shard k: entries k*size .. (k+1)*size - 1 of the
                              list, their records exactly as --format jsonl
    DIR/part-00000.stats.json that part's images, faces, failures, seconds,
                              host and CPU kind

A shard is a fixed slice of the input list, so a shard run again rewrites
its part with the same bytes and never duplicates a record; every part is
written atomically (a temporary file renamed), so a part that exists is
complete. `--resume` runs only the parts that are missing. The manifest and
the input list are published once, by whichever process comes first (a
temporary file hard-linked into place: it exists whole or not at all), and
every later process, an array task or a resumed run, checks its own against
it: another tool version, parameters, models, input list or shard size is
refused, the difference named.

The package: the folder and its manifest (manifest.py), one shard's run
(shard.py: `run_shard(manifest, index)`, pure and repeatable, what any
engine calls: the CLI's --jobs, Dask, Ray, Spark), preparing a run
(plan.py) and joining the parts (merge.py). Which engine runs the shards is
chosen above this package, in run/engines.py.
"""
