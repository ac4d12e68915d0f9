//! The virtio-net device under smoltcp: PCI configuration through ports 0xCF8/0xCFC, DMA
//! memory from the heap, and smoltcp's `Device` over `virtio-drivers`' `VirtIONet`.

use alloc::vec::Vec;
use core::ptr::NonNull;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use x86_64::instructions::port::Port;

/// PCI configuration space through ports 0xCF8/0xCFC (configuration mechanism #1): QEMU's `pc`
/// machine has no ECAM, the only access `virtio-drivers` ships. Written here: a few port writes.
struct PortCam;

impl PortCam {
    fn address(function: DeviceFunction, offset: u8) -> u32 {
        0x8000_0000
            | u32::from(function.bus) << 16
            | u32::from(function.device) << 11
            | u32::from(function.function) << 8
            | u32::from(offset & 0xFC)
    }
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
        // SAFETY: the PCI configuration ports; touches no memory.
        unsafe {
            Port::<u32>::new(0xCF8).write(Self::address(function, offset));
            Port::<u32>::new(0xCFC).read()
        }
    }

    fn write_word(&mut self, function: DeviceFunction, offset: u8, data: u32) {
        // SAFETY: the PCI configuration ports; touches no memory.
        unsafe {
            Port::<u32>::new(0xCF8).write(Self::address(function, offset));
            Port::<u32>::new(0xCFC).write(data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// DMA for `virtio-drivers`: heap memory, identity-mapped, so an address is its own physical one.
struct MetalHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory that nothing else uses until
// `dma_dealloc` gives it back; boot.rs identity-maps all memory below 4 GiB (a physical address
// is its virtual one) and there is no IOMMU, so `share` hands the device the buffer's own
// address, and x86 DMA is cache-coherent (nothing to flush in `unshare`). `mmio_phys_to_virt`
// only accepts BARs below 4 GiB, which lie in the identity map's uncached last GiB.
unsafe impl Hal for MetalHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = core::alloc::Layout::from_size_align(pages * 4096, 4096).expect("a layout");
        // SAFETY: a non-zero layout.
        let pointer = unsafe { alloc::alloc::alloc_zeroed(layout) };
        let pointer = NonNull::new(pointer).expect("DMA memory");
        (pointer.as_ptr() as PhysAddr, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout = core::alloc::Layout::from_size_align(pages * 4096, 4096).expect("a layout");
        // SAFETY: allocated by dma_alloc with this layout.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        assert!(
            paddr + size as u64 <= 1 << 32,
            "a device BAR at {paddr:#x} lies above 4 GiB, outside the identity map"
        );
        NonNull::new(paddr as *mut u8).expect("a BAR at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

type Net = VirtIONet<MetalHal, PciTransport, 16>;

/// The device, as smoltcp sees it.
pub struct NetDevice(Net);

/// A received frame.
pub struct Rx(Vec<u8>);
/// Room to send a frame.
pub struct Tx<'a>(&'a mut Net);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buffer = self.0.new_tx_buffer(len);
        let result = f(buffer.packet_mut());
        // A full queue drops the frame, as a wire would; TCP sends it again.
        let _ = self.0.send(buffer);
        result
    }
}

impl Device for NetDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Rx, Tx<'_>)> {
        if !self.0.can_recv() {
            return None;
        }
        let buffer = self.0.receive().ok()?;
        let packet = buffer.packet().to_vec();
        self.0.recycle_rx_buffer(buffer).ok()?;
        Some((Rx(packet), Tx(&mut self.0)))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Tx<'_>> {
        self.0.can_send().then_some(Tx(&mut self.0))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.max_transmission_unit = 1514;
        capabilities.medium = Medium::Ethernet;
        capabilities
    }
}

/// The first virtio-net device on PCI bus 0, set up; its description for the console.
pub fn find() -> Result<(NetDevice, [u8; 6], DeviceFunction), &'static str> {
    let mut root = PciRoot::new(PortCam);
    let (function, _) = root
        .enumerate_bus(0)
        .find(|(_, info)| {
            virtio_drivers::transport::pci::virtio_device_type(info) == Some(DeviceType::Network)
        })
        .ok_or("no virtio-net device (QEMU: -device virtio-net-pci)")?;
    let transport = PciTransport::new::<MetalHal, _>(&mut root, function)
        .map_err(|_| "the virtio-net device's PCI transport cannot be set up")?;
    let net = Net::new(transport, 2048).map_err(|_| "the virtio-net device cannot be set up")?;
    let mac = net.mac_address();
    Ok((NetDevice(net), mac, function))
}
