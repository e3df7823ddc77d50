// Package qemu boots a real measured boot chain, OVMF firmware, shim, GRUB
// and a Debian kernel, under QEMU's software emulation with swtpm as the
// TPM, for end-to-end tests of `vouch agent` and `vouch server`.
//
// The pieces are usable on their own: [Fetch] downloads and caches the
// Debian packages of the boot chain, [WriteInitramfs] writes a
// deterministic newc cpio archive, [WriteDisk] writes a GPT disk image with
// a FAT EFI system partition, [ManufactureTPM] provisions swtpm state with
// EK certificates from swtpm-localca, and [Start] runs QEMU with a user
// network whose only way out is a forward to one loopback port.
//
// Building the same inputs twice gives the same bytes, so that a boot's
// event log can be predicted from the files alone. The harness needs
// Debian's qemu-system-x86, ovmf, swtpm, swtpm-tools, dosfstools and
// mtools; its tests run only when VOUCH_E2E_QEMU=1 (see docs/e2e-qemu.md).
package qemu
