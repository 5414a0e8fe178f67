package device

// Info describes a capture source or restore target. For a regular file only
// Path and Size are set. For a block device the identity fields come from
// sysfs and /dev/disk and are empty when the kernel or udev does not provide
// them (loop devices have no serial); for a partition they describe the
// whole disk it is on.
type Info struct {
	Path              string // as the caller named it
	IsBlock           bool   // a block device, not a regular file
	Size              int64  // bytes
	Major, Minor      uint32 // device number of a block device
	LogicalSectorSize int    // bytes; the unit of aligned I/O and of BLKZEROOUT

	Name        string   // kernel name, e.g. "sdb1" or "loop3"
	Disk        string   // kernel name of the whole disk, e.g. "sdb"; equal to Name for a disk
	Serial      string   // disk serial number
	WWN         string   // world wide name / wwid, e.g. "naa.5000c500a1b2c3d4"
	Model       string   // disk model
	FSUUID      string   // filesystem UUID from /dev/disk/by-uuid, if udev knows one
	ByID        []string // /dev/disk/by-id links to this exact device, sorted
	BackingFile string   // for a bound loop device, the file behind it
}
