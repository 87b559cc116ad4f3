"""A weight-sharing supernet over a search space (Once-for-All / BigNAS): train it once, then score
any candidate with its slice of the shared weights. `elastic`: how a shared tensor serves a smaller
choice; `model`: the network; `directory`: its files; `training`: the sandwich rule; `scoring`:
candidates scored and exported with recalibrated BatchNorm."""
