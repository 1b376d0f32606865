package collective

// AdditiveUnchecked skips the threshold check so tests can show that fewer
// than T members get garbage.
var AdditiveUnchecked = (*ThresholdShare).additive
