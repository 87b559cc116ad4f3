"""Published architecture-search benchmarks, shipped as data: ground truth for measuring
controllers and evaluators without training anything."""
