package shard

// SetGroupCommit switches group commit for Stores opened afterwards, so
// benchmarks can compare it with one transaction per write. It returns a
// function restoring the previous setting.
func SetGroupCommit(on bool) (restore func()) {
	old := groupCommit
	groupCommit = on
	return func() { groupCommit = old }
}

// SetTombstoneLimits sets how many tombstones a shard keeps, and the slack
// before it prunes, for tests. It returns a function restoring the defaults.
func SetTombstoneLimits(keep, slack int) (restore func()) {
	oldKeep, oldSlack := pruneKeep, pruneSlack
	pruneKeep, pruneSlack = keep, slack
	return func() { pruneKeep, pruneSlack = oldKeep, oldSlack }
}
