package device_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/seedship/seedship/device"
)

// How the restore engine guards a target: refuse the capture source, then
// check and claim the target in one step, and hold the claim until done.
func Example() {
	const source, target = "/dev/sda", "/dev/sdb"
	const imageSize = 500 << 30

	same, err := device.SameDevice(source, target)
	if err != nil {
		log.Fatal(err)
	}
	if same {
		log.Fatalf("%s and %s share storage: refusing to restore onto the source", source, target)
	}
	f, err := device.OpenTarget(target, imageSize, false)
	var inUse *device.InUseError
	switch {
	case errors.As(err, &inUse):
		// For example: /dev/sdb has partition /dev/sdb1 mounted on /data:
		// unmount it (umount /data) first
		log.Fatal(inUse)
	case err != nil:
		log.Fatal(err)
	}
	defer f.Close() // releases the exclusive claim

	// ... write the image, zeroing the holes with device.ZeroRange ...
	if err := f.Sync(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("restored")
}
