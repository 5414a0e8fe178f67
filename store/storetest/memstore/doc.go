// Package memstore is an in-memory [store.Store] and a fault-injecting
// wrapper for any store, so that engine, reader and verify tests can drive
// damage and failure paths (an error on the third Get of one segment, a body
// cut after 1000 bytes, a flipped byte, a stalled read, a slow Put) without
// files or HTTP. kopia's blobtesting/faulty.go is the model.
//
// [Store] keeps objects in a map. It passes the conformance suite of package
// storetest (Put is atomic and all-or-nothing, Get refuses short reads, List
// is in lexical order), holds a writer lock ([store.Locker]) for the life of
// the value, and has test hooks ([Store.Object], [Store.SetObject],
// [Store.Keys]) to read and plant bytes without going through Put.
//
// [Faulty] wraps any store.Store and applies [Rule]s: each rule names an
// [Op] (or every op), a key prefix, which matching calls it acts on (skip
// the first Skip, then act Times times, or on every one), and what it does
// ([Kind]: fail, cut or stall a stream at a byte, truncate a body, corrupt
// a byte, return small reads) plus an optional Delay. Every injected error
// wraps [ErrInjected] unless the rule gives its own.
//
//	mem := memstore.New()
//	f := memstore.NewFaulty(mem)
//	f.Add(memstore.Rule{Op: memstore.OpGet, Key: "data/00000001.seg", Kind: memstore.Cut, At: 4096, Times: 1})
//	f.Add(memstore.Rule{Op: memstore.OpGet, Key: "data/", Kind: memstore.Corrupt, At: 100})
//
// It is a test helper that imports only package store and the standard
// library: never package format, an implementation of store, or the engine.
package memstore
