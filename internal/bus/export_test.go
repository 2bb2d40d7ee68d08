package bus

// NewBatcher exposes the batcher to the external tests.
var NewBatcher = newBatcher
