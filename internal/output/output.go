// Package output writes what the tracer saw: NDJSON for machines (one
// object a line, the contract in docs/ndjson.md) or a text table for a
// person. Both are pipeline.Sinks. Writers buffer; Flush pushes the buffer
// out, and the first write error sticks and is returned by every later
// Flush.
package output
