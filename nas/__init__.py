"""Search controllers, rewards, proxy training and the `nas` command line."""
