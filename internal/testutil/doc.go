// Package testutil holds the helpers the tests share: building the
// cxbridge binary for the tests that run it as a process, a free port, a
// log sink for concurrent writers, waiting for a condition with a
// deadline, and skipping the slow tests under -short.
//
// It is for tests only (it imports testing): no product package may
// import it, nor any package under it (cmd/cxbridge's TestProductDeps
// checks).
package testutil
