package shard

// SetGroupCommit switches group commit for Stores opened afterwards, so
// benchmarks can compare it with one transaction per write. It returns a
// function restoring the previous setting.
func SetGroupCommit(on bool) (restore func()) {
	old := groupCommit
	groupCommit = on
	return func() { groupCommit = old }
}
