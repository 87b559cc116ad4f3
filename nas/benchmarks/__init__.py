"""Published architecture-search benchmarks, shipped as data: ground truth for measuring
controllers and evaluators without training anything. Each is one declaration
(`benchmark.Benchmark`), found by name with `benchmark.get_benchmark`."""
