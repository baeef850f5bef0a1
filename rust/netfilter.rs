// SPDX-License-Identifier: GPL-2.0

//! Netfilter hooks, for transparent mode: a hook at `NF_INET_POST_ROUTING` sees every IPv4
//! and IPv6 packet after routing chose its output device, and may take it (`NF_STOLEN`).
//!
//! [`Hooks`] registers a set of hooks on the initial network namespace and unregisters them
//! on drop, waiting for any hook still running. A network driver that implements
//! [`PostRoutingHook`] adds such hooks for its device with
//! [`net::Registration::add_post_routing_hooks`]; the registration owns them and drops them
//! before anything else. The trampoline from the netfilter core to the driver is here too.

use super::{bindings, net};
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{prelude::*, types::Opaque};

/// `NFPROTO_IPV4` (uapi `linux/netfilter.h`, stable).
const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6` (uapi, stable).
const NFPROTO_IPV6: u8 = 10;
/// `NF_INET_POST_ROUTING` (uapi `enum nf_inet_hooks`, stable).
const NF_INET_POST_ROUTING: u32 = 4;
/// `NF_ACCEPT` (uapi, stable).
const NF_ACCEPT: u32 = 1;
/// `NF_STOLEN` (uapi, stable): the hook took the packet (and freed it).
const NF_STOLEN: u32 = 2;
/// `NF_DROP` (uapi, stable): the core frees the packet.
const NF_DROP: u32 = 0;
/// `NF_IP_PRI_LAST` / `NF_IP6_PRI_LAST`: after every other hook (firewall rules included).
const PRI_LAST: i32 = i32::MAX;

/// The protocol family a hook runs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `NFPROTO_IPV4`.
    Ipv4,
    /// `NFPROTO_IPV6`.
    Ipv6,
}

impl Proto {
    fn raw(self) -> u8 {
        match self {
            Proto::Ipv4 => NFPROTO_IPV4,
            Proto::Ipv6 => NFPROTO_IPV6,
        }
    }
}

/// What a hook decided about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it go on its way (`NF_ACCEPT`).
    Accept,
    /// The hook delivered it elsewhere: it is freed as consumed and the stack forgets it
    /// (`NF_STOLEN`).
    Consumed,
    /// Drop it (`NF_DROP`: the netfilter core frees it).
    Drop,
}

/// What [`HookPacket::confirm`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// The packet's connection is confirmed (or it has none): it may be taken.
    Done,
    /// A connection whose helper or sequence adjustment the stack's confirm hook must run:
    /// leave the packet to the stack.
    Leave,
    /// Confirming failed: the stack's hook would drop the packet.
    Failed,
}

/// The state a hook is called with (`struct nf_hook_state`).
///
/// # Invariants
///
/// Only handed out by reference for the duration of a hook call, during which the state and
/// its devices are valid.
#[repr(transparent)]
pub struct State(Opaque<bindings::nf_hook_state>);

impl State {
    /// # Safety
    ///
    /// `ptr` must be the state of a running hook call, valid for `'a`.
    unsafe fn from_raw<'a>(ptr: *const bindings::nf_hook_state) -> &'a Self {
        // CAST: `State` is `repr(transparent)` over `Opaque<nf_hook_state>`.
        // SAFETY: valid for `'a` (caller).
        unsafe { &*ptr.cast() }
    }

    fn as_raw(&self) -> *const bindings::nf_hook_state {
        self.0.get()
    }

    /// The protocol family, if one of ours.
    pub fn proto(&self) -> Option<Proto> {
        // SAFETY: valid by the type invariant.
        match unsafe { bindings::ivnet_nf_state_pf(self.as_raw()) } {
            NFPROTO_IPV4 => Some(Proto::Ipv4),
            NFPROTO_IPV6 => Some(Proto::Ipv6),
            _ => None,
        }
    }

    /// The output device's ifindex (0 if there is none).
    pub fn out_ifindex(&self) -> i32 {
        // SAFETY: valid by the type invariant; `out` is NULL or valid during the call.
        unsafe { bindings::ivnet_nf_state_out_ifindex(self.as_raw()) }
    }

    /// The output device's MTU (0 if there is none).
    pub fn out_mtu(&self) -> u32 {
        // SAFETY: as in `out_ifindex`.
        unsafe { bindings::ivnet_nf_state_out_mtu(self.as_raw()) }
    }
}

/// One hook call: its packet and the state it was called with.
///
/// # Invariants
///
/// `skb` is the packet the hook call with `state` was made for, valid for `'a` (the call):
/// its route and headers are set and stay put meanwhile, and it is ours to work on as the
/// hooks after ours would.
pub struct HookPacket<'a> {
    skb: &'a net::SkBuff,
    state: &'a State,
}

impl<'a> HookPacket<'a> {
    /// The packet, starting at its network header.
    pub fn skb(&self) -> &'a net::SkBuff {
        self.skb
    }

    /// The state of the hook call.
    pub fn state(&self) -> &'a State {
        self.state
    }

    /// Whether the packet's route sends it straight to its destination on the output device:
    /// IPv4 unicast without a gateway, IPv6 with the destination as next hop, and no IPsec
    /// transform or lightweight-tunnel encap still to apply. `false` if it has no route or
    /// another device's.
    pub fn direct_route(&self) -> bool {
        // SAFETY: the state is valid by its type invariant and the packet by its own; the
        // packet is the one this hook call was made for (type invariant), so its route and
        // headers are set and stay put during the call (the helper picks the route's type and
        // reads the IPv6 header by the state's protocol family).
        unsafe { bindings::ivnet_nf_route_direct(self.skb.0.as_ptr(), self.state.as_raw()) }
    }

    /// Confirms the packet's conntrack entry as the stack's confirm hook would (that hook has
    /// the same last priority as ours, and may come after it). A packet taken without this
    /// leaves its connection unconfirmed: its replies look new to stateful firewall rules.
    /// Call only just before taking the packet.
    pub fn confirm(&self) -> Confirm {
        // SAFETY: the packet is valid and, during the hook call it belongs to (type
        // invariant), ours to work on as the hook the stack would run next would; conntrack's
        // own locking covers the entry.
        match unsafe { bindings::ivnet_nf_confirm(self.skb.0.as_ptr()) } {
            1 => Confirm::Done,
            0 => Confirm::Leave,
            _ => Confirm::Failed,
        }
    }
}

/// The C signature of a hook.
///
/// # Safety
///
/// Called by the netfilter core only, with the private pointer it was registered with, a
/// valid `sk_buff` and a valid state.
type HookFn = unsafe extern "C" fn(
    *mut core::ffi::c_void,
    *mut bindings::sk_buff,
    *const bindings::nf_hook_state,
) -> u32;

/// Registered hooks; unregistered on drop.
///
/// # Invariants
///
/// Every pointer in `ops` was returned by `ivnet_nf_register` and is registered.
pub struct Hooks {
    ops: KVec<NonNull<bindings::nf_hook_ops>>,
}

impl Hooks {
    /// Registers `hook` with private pointer `data` at `hooknum`, priority `priority`, for
    /// each protocol in `protos`. All or nothing: on failure those already registered are
    /// unregistered again.
    ///
    /// # Safety
    ///
    /// `hook` called with `data` must be sound from the moment of registration until the
    /// returned value is dropped (in softirq or process context, with an `sk_buff` it may take
    /// only by returning `NF_STOLEN`).
    unsafe fn register(
        hook: HookFn,
        data: *mut core::ffi::c_void,
        protos: &[Proto],
        hooknum: u32,
        priority: i32,
    ) -> Result<Self> {
        let mut hooks = Hooks {
            ops: KVec::with_capacity(protos.len(), GFP_KERNEL)?,
        };
        for p in protos {
            let mut err = 0;
            // SAFETY: `hook` and `data` are fine to call until unregistered (caller); the
            // function allocates the ops itself; `err` is a local.
            let ops = unsafe {
                bindings::ivnet_nf_register(Some(hook), data, p.raw(), hooknum, priority, &mut err)
            };
            let Some(ops) = NonNull::new(ops) else {
                // `hooks` drops here and unregisters what was registered.
                return Err(Error::from_errno(err));
            };
            // INVARIANT: registered just above. The push cannot fail: capacity reserved.
            if hooks.ops.push(ops, GFP_KERNEL).is_err() {
                // SAFETY: registered above and not kept anywhere else.
                unsafe { bindings::ivnet_nf_unregister(ops.as_ptr()) };
                return Err(ENOMEM);
            }
        }
        Ok(hooks)
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        for ops in self.ops.iter() {
            // SAFETY: registered by the type invariant; `ivnet_nf_unregister` waits for hook
            // calls still running (`synchronize_net`) and frees the ops.
            unsafe { bindings::ivnet_nf_unregister(ops.as_ptr()) };
        }
    }
}

// SAFETY: the ops are only used by the netfilter core and our `Drop`, from any thread.
unsafe impl Send for Hooks {}
// SAFETY: `&Hooks` exposes nothing.
unsafe impl Sync for Hooks {}

/// A network driver that also sees IPv4 and IPv6 packets after routing (netfilter
/// `NF_INET_POST_ROUTING`, last priority), added with
/// [`net::Registration::add_post_routing_hooks`].
pub trait PostRoutingHook: net::Operations {
    /// A packet routed to `pkt.state().out_ifindex()`, `pkt.skb()` starting at its network
    /// header. It may be copied; [`Verdict::Consumed`] means the driver delivered it and the
    /// stack must forget it. Softirq or process context, bottom halves possibly enabled.
    fn post_routing(&self, dev: &net::Device, pkt: &HookPacket<'_>) -> Verdict;
}

/// The trampoline from the netfilter core to [`PostRoutingHook::post_routing`].
struct Adapter<T: PostRoutingHook>(PhantomData<T>);

impl<T: PostRoutingHook> Adapter<T> {
    /// # Safety
    ///
    /// Called by the netfilter core for a hook registered by
    /// `Registration::add_post_routing_hooks`, whose private pointer is our `net_device`
    /// (hooks are unregistered before the device goes away); `skb` is valid and not ours
    /// unless we return `NF_STOLEN`; `state` is valid during the call.
    unsafe extern "C" fn nf_hook(
        priv_: *mut core::ffi::c_void,
        skb: *mut bindings::sk_buff,
        state: *const bindings::nf_hook_state,
    ) -> u32 {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { net::Device::from_registered::<T>(priv_.cast()) };
        // SAFETY: valid during the call (caller).
        let state = unsafe { State::from_raw(state) };
        let Some(p) = NonNull::new(skb) else {
            return NF_ACCEPT;
        };
        // INVARIANT: not ours: `ManuallyDrop` keeps it from being freed unless taken below.
        let skb = core::mem::ManuallyDrop::new(net::SkBuff(p));
        // INVARIANT: `skb` is the packet of this call, made with `state`, both valid during it.
        let pkt = HookPacket { skb: &skb, state };
        match data.post_routing(dev, &pkt) {
            Verdict::Accept => NF_ACCEPT,
            Verdict::Drop => NF_DROP,
            Verdict::Consumed => {
                // SAFETY: returning `NF_STOLEN` makes the packet ours; we free it as consumed.
                unsafe { bindings::ivnet_consume_skb(p.as_ptr()) };
                NF_STOLEN
            }
        }
    }
}

impl<T: PostRoutingHook> net::Registration<T> {
    /// Calls [`PostRoutingHook::post_routing`] for every IPv4 and IPv6 packet after routing,
    /// after every other hook, until the registration is dropped. May sleep.
    pub fn add_post_routing_hooks(&mut self) -> Result {
        if self.hooks.is_some() {
            return Err(EBUSY);
        }
        // SAFETY: `Adapter::<T>::nf_hook` with our device as its private pointer is sound
        // while the device is registered with `data`; `Drop` unregisters the hooks (and waits
        // for running ones) before anything else is torn down.
        let hooks = unsafe {
            Hooks::register(
                Adapter::<T>::nf_hook,
                self.dev.as_ptr().cast(),
                &[Proto::Ipv4, Proto::Ipv6],
                NF_INET_POST_ROUTING,
                PRI_LAST,
            )?
        };
        self.hooks = Some(hooks);
        Ok(())
    }
}
