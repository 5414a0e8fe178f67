// Package engine runs seedship's capture and restore pipelines: read →
// hash → compress → write for capture, and fetch → verify → write for
// restore, with bounded concurrency, bounded memory and progress reports.
//
// It exists as its own package because this is the one place where the
// format (package format), the places images live (package store), the
// checks (package verify) and the devices (package device) meet; each of
// those stays ignorant of the others. The engine parses no bytes itself:
// every byte layout is package format's.
package engine
