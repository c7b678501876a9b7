"""The CI goal: wait for a forge's checks on the pushed commit and judge them."""
