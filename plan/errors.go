package plan

import "errors"

// Sentinel errors; test for them with errors.Is.
var (
	// ErrShards: a shard count outside 1…MaxShards.
	ErrShards = errors.New("invalid shard count")
	// ErrShardRange: a shard id outside the plan's 0…shards−1.
	ErrShardRange = errors.New("shard id out of range")
	// ErrNotPlan: a manifest that is not a nestattest plan.
	ErrNotPlan = errors.New("not a nestattest plan")
	// ErrInvalid: a plan whose manifest or shard document is malformed or
	// inconsistent.
	ErrInvalid = errors.New("invalid plan")
	// ErrOtherRoot: a plan made for another root than the one given (the
	// tag moved since the plan was made, or another repository).
	ErrOtherRoot = errors.New("plan made for another root")
	// ErrChanged: a node's manifest is not what the plan says it is.
	ErrChanged = errors.New("node differs from the plan")
	// ErrTooLarge: a shard's document over MaxShardBytes.
	ErrTooLarge = errors.New("shard too large")
)
