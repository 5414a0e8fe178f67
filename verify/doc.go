// Package verify checks a seedship image, or a device against an image, and
// reports what it found. It is checking and reporting on top of package
// seed, the one image reader: [Check] has seed read every manifest file,
// every data segment (chunk hashes and block digests, or stored digests,
// headers, indexes, footers) and every parity segment (rows against their
// CRC-32C and rows digest), and asks seed whether parity can rebuild each
// damaged stripe; [Device] compares a device or file with the manifest's
// chunk hashes and, given the image's store, with every stored chunk's
// 64 KiB block digests from the segment indexes (so a chunk that differs
// is named with its changed blocks), and recomputes the whole-source
// SHA-256 while it reads. A digest-only image (no chunk data) is checked
// in two halves: Check checks every structure it holds, Device checks its
// digests against the device they describe.
//
// A check of an image has a depth (Report.Depth, spec §11.7). It is deep
// on a plain image and on an encrypted one unlocked with its key: every
// chunk opened (decrypted, decompressed) and checked against its chunk
// hash and block digests, which proves its stored bytes as well (their
// stored digests are not computed again).
// It checks transport integrity only on an encrypted image without its
// key, or when asked (ScanOptions.Transport): every stored byte against
// its stored digest, with every structure, parity row and manifest copy,
// and no chunk opened; its report then says so ([TransportOnlyNote]),
// because only a deep check shows that the stored bytes decode to the
// source. Device needs an encrypted image's key: its chunk hashes are
// keyed and its whole-source SHA-256 sealed.
//
// Its results are reports that collect every finding (chunk index, source
// byte range, segment), like restic's checker: one bad chunk does not hide
// the next, and each report lists which checks ran (Report.Checked).
// Manifest copies of another image are named (Report.Ignored), never
// counted as this image's.
//
// It also builds and decodes restore receipts ([NewReceipt],
// [ParseReceipt], [DescribeTarget]): the evidence, bound to an image and
// a target's identity, that extend requires before a partial resync. The
// CLI writes them.
//
// It writes nothing: not to a target device, and not to the image (repair
// is the engine's, built on seed).
package verify
