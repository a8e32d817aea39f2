package crypto

// ExtractSummaryStrict is ExtractSummary without its recover, so that fuzzing
// and the limit tests see a panic instead of a partial summary.
func ExtractSummaryStrict(raw []byte) (sm Summary) {
	extractInto(&sm, raw)
	return sm
}
