"""A weight-sharing supernet over a search space (Once-for-All / BigNAS): train once, then score
any candidate with its slice of the shared weights (`model`), train it with the sandwich rule
(`training`), score candidates for a search (`scoring`), export a candidate as a plain model."""
