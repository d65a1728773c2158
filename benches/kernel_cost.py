#!/usr/bin/env python3
"""benches/kernel_cost.py - the table of benches/kernel-cost.sh: where a forwarded miss's CPU
time goes, by kernel function group, from its runs' `perf record -g -C 1` (cpu-clock) data.

    python3 benches/kernel_cost.py RUNDIR...      (the r<rep>-<row> folders of one OUTDIR)

For each run it reads summary.txt (row, pid, answered, cpu_ns: the server's schedstat run time
over the dnsperf run) and the server's samples (`perf script --pid`), and gives each sample to a
group by its leafmost frame that matches GROUPS (generic helpers such as spin locks fall through
to their caller; a sample in user space is "user"). The groups are summed into the rows of
TABLE. perf sees less than schedstat counts (on a VM, time with interrupts off around wake-ups
is partly lost), so each run's sampled ns are scaled to its schedstat CPU time; then each
column is the mean over that row's runs. Caches each run's sampled ns per group in
RUNDIR/groups.tsv. Python 3 standard library and perf only.
"""
import os
import re
import subprocess
import sys
from collections import defaultdict

# The fine groups (kernel function name patterns), first match wins.
GROUPS = [
    ("copy", r"^(_copy_to_iter|_copy_from_iter|copy_user_generic|rep_movs_alternative|rep_stos_alternative|copy_to_user|copy_from_user|_copy_to_user|_copy_from_user|__skb_datagram_iter|skb_copy_datagram_iter|simple_copy_to_iter|csum_partial_copy\w*|ip_generic_getfrag|memcpy|__memcpy|memset|__memset|memmove)$"),
    ("ipi/wakeup-remote", r"^(\w*send_ipi\w*|\w*send_IPI\w*|kvm_hypercall\w*|smp_send_reschedule|kvm_smp_send_call_func\w*|arch_send_call_function\w*|native_send_call_func\w*|x2apic_send_IPI\w*|__x2apic_send_IPI\w*|native_smp_send_reschedule|send_call_function_single_ipi|__smp_call_single_queue|smp_call_function\w*|default_send_IPI\w*|kvm_send_ipi\w*|__send_ipi\w*|native_write_msr|native_apic_msr_write|native_x2apic_icr_write|x2apic_send_IPI)$"),
    ("ttwu", r"^(try_to_wake_up|ttwu_\w+|select_task_rq\w*|select_idle\w*|wake_affine\w*|available_idle_cpu|enqueue_task\w*|enqueue_entity|activate_task|check_preempt\w*|wakeup_preempt\w*|resched_curr\w*|update_rq_clock\w*|place_entity|sched_clock\w*|kvm_sched_clock_read|pvclock_clocksource_read\w*)$"),
    ("epoll-callback", r"^(ep_poll_callback|ep_autoremove_wake_function)$"),
    ("waitqueue", r"^(__wake_up\w*|sock_def_readable|autoremove_wake_function|default_wake_function|receiver_wake_function|pollwake|wake_up_\w+|sock_def_write_space)$"),
    ("hrtimer/clockevent", r"^(hrtimer_\w+|__hrtimer_\w+|schedule_hrtimeout\w*|lapic_next_deadline|clockevents_program_event|tick_program_event|__remove_hrtimer|enqueue_hrtimer|get_nohz_timer_target|timerqueue_\w+|ktime_get\w*)$"),
    ("sched", r"^(__schedule|schedule|schedule_idle|pick_next\w*|pick_task\w*|pick_eevdf|finish_task_switch\w*|__switch_to\w*|switch_mm\w*|dequeue_task\w*|dequeue_entity|dequeue_entities|update_curr\w*|put_prev\w*|set_next\w*|psi_\w+|context_switch|update_load_avg|__update_load_avg\w*|update_cfs_group|reweight_entity|prepare_task_switch|__dequeue_entity|__enqueue_entity|avg_vruntime\w*|update_min_vruntime|raw_spin_rq_lock\w*|newidle_balance|sched_balance_newidle|balance_fair|cpuacct_charge|__cgroup_account_cputime\w*|cgroup_rstat_updated|css_rstat_updated|update_entity_lag|vruntime_eligible|rb_erase|rb_insert_color|__calc_delta\w*|record_times|rseq_\w+|__rseq_handle_notify_resume)$"),
    ("epoll_wait", r"^(ep_send_events|ep_item_poll|do_epoll_wait|ep_poll|__ep_eventpoll_poll|ep_done_scan|ep_start_scan|epoll_put_uevent|udp_poll|datagram_poll|sock_poll|ep_busy_loop\w*|__x64_sys_epoll_wait|__x64_sys_epoll_pwait|ep_events_available|ep_timeout_to_timespec|select_estimate_accuracy|set_normalized_timespec64|ktime_get_ts64|poll_select_set_timeout)$"),
    ("sk-mem-accounting", r"^(__sk_mem_\w+|sk_mem_\w+|mem_cgroup_\w*skmem|udp_rmem_release|sk_forced_mem_schedule|try_charge\w*|refill_stock|consume_stock|page_counter_\w+|mod_memcg_state|__mod_memcg_state|memcg_\w+|drain_stock|__refill_stock|obj_cgroup_\w+|sock_rfree|__sock_wfree|sock_wfree|skb_set_owner_w|udp_skb_destructor)$"),
    ("skb-free", r"^(consume_skb|kfree_skb\w*|__kfree_skb|skb_release_\w+|kfree_skbmem|skb_free_head|kmem_cache_free|kfree|__slab_free|skb_attempt_defer_free|__consume_stateless_skb|skb_consume_udp|napi_consume_skb|sk_skb_reason_drop|free_frozen_pages|__free_pages)$"),
    ("skb-alloc", r"^(__alloc_skb|alloc_skb_with_frags|sock_alloc_send_pskb|kmalloc_reserve|kmem_cache_alloc\w*|__kmalloc\w*|___slab_alloc|__slab_alloc\w*|sock_wmalloc|__build_skb_around|skb_set_owner_w)$"),
    ("route", r"^(ip_route_output\w*|__ip_route_output\w*|fib_table_lookup|fib_lookup\w*|__fib_lookup|fib4_rule\w*|fib_rules_lookup|xfrm_lookup\w*|__mkroute_output|rt_dst_alloc|rt_cache_valid|dst_release\w*|ipv4_dst_check|__sk_dst_check|sk_dst_check|ip_route_output_key_hash_rcu|ip_route_input\w*|ip_route_use_hint|fib_validate_source|__fib_validate_source|ip_mkroute_input|security_sk_classify_flow|inet_lookup_ifaddr_rcu|l3mdev\w*)$"),
    ("udp/ip tx", r"^(udp_sendmsg|udp_send_skb|ip_make_skb|__ip_make_skb|__ip_append_data|ip_append_data|ip_setup_cork|ip_cork_release|ip_send_skb|ip_local_out|__ip_local_out|ip_output|ip_finish_output\w*|__ip_finish_output|__dev_queue_xmit|dev_hard_start_xmit|loopback_xmit|netif_rx\w*|__netif_rx|enqueue_to_backlog|ip_send_check|udp4_hwcsum|udp_set_csum|skb_clone_tx_timestamp|eth_type_trans|ip_select_ident\w*|__ip_select_ident|sock_tx_timestamp|inet_sendmsg|sock_sendmsg\w*|__sock_sendmsg|validate_xmit_skb\w*|netdev_core_pick_tx|dev_queue_xmit_nit|ipv4_mtu|ip_fragment|nf_hook_slow|ip_copy_addrs|sk_setup_caps|ipv4_pktinfo_prepare|ip_cmsg_send|udp_cmsg_send)$"),
    ("udp/ip rx (softirq)", r"^(net_rx_action|__napi_poll\w*|process_backlog|__netif_receive_skb\w*|netif_receive_skb\w*|ip_rcv\w*|ip_local_deliver\w*|ip_protocol_deliver_rcu|udp_rcv|__udp4_lib_rcv|udp_unicast_rcv_skb|udp_queue_rcv_one_skb|udp_queue_rcv_skb|__udp_queue_rcv_skb|__udp_enqueue_schedule_skb|__udp4_lib_lookup|udp4_lib_lookup2|udp4_lib_lookup\w*|udp4_csum_init|compute_score|udp_lib_checksum_complete|__skb_checksum_complete|handle_softirqs|__do_softirq|do_softirq\w*|__local_bh_enable_ip|sk_filter_trim_cap|udp_lib_lookup\w*|inet_ehashfn|udp_ehashfn|ip_rcv_finish_core|sock_queue_rcv_skb\w*|skb_pull_rcsum|nf_hook_slow|raw_local_deliver|inet_lhash2\w*|udp4_lib_lookup4|udp_sk_rx_dst_set|ip_sublist_rcv\w*|netif_receive_skb_list_internal|gro_normal_list|_raw_spin_lock_bh|__udp_queue_rcv\w*)$"),
    ("udp rx (recvmsg)", r"^(udp_recvmsg|__skb_recv_udp|__skb_try_recv_from_queue|__skb_try_recv_datagram|skb_recv_udp|first_packet_length|sock_recv_cmsgs|__sock_recv_\w+|inet_recvmsg|sock_recvmsg\w*|ip_recv_error|ip_cmsg_recv_offset|udp_skb_csum_unnecessary|skb_consume_udp|__sk_queue_drop_skb|__skb_wait_for_more_packets|sock_rcvtimeo|udp_recvmsg\w*|skb_queue_splice\w*|__skb_recv_datagram|skb_recv_datagram|prepare_to_wait_exclusive|finish_wait)$"),
    ("msghdr/iovec", r"^(copy_msghdr_from_user|__copy_msghdr\w*|recvmsg_copy_msghdr|sendmsg_copy_msghdr|import_iovec|__import_iovec|iovec_from_user|import_ubuf|move_addr_to_user|move_addr_to_kernel|put_cmsg\w*|__put_cmsg|copy_iovec_from_user|___sys_recvmsg|____sys_recvmsg|___sys_sendmsg|____sys_sendmsg|do_recvmmsg|__sys_recvmmsg|__sys_sendmmsg|__sys_recvmsg|__sys_sendmsg|__sys_sendto|__sys_recvfrom|__x64_sys_\w+|sockfd_lookup_light|__fdget\w*|fdget\w*|fput\w*|__fget_light|fget\w*|security_socket_\w+|apparmor_\w+|selinux_\w+|bpf_lsm_\w+|security_\w+|aa_\w+|poll_freewait|kfree_link|kfree_rcu\w*|__check_object_size\w*|check_heap_object|__virt_addr_valid|check_stack_object)$"),
    ("syscall entry/exit", r"^(entry_SYSCALL_64\w*|do_syscall_64|syscall_exit_to_user_mode\w*|syscall_return_via_sysret|x64_sys_call|exit_to_user_mode\w*|syscall_trace_enter|__rcu_read_(un)?lock|fpregs_assert_state_consistent|switch_fpu_return|restore_fpregs_from_fpstate|arch_exit_to_user_mode_prepare|syscall_enter_from_user_mode\w*|irqentry_\w+|error_entry|error_return|ret_from_fork\w*|clear_bhb_loop|__x86_return_thunk|__x86_indirect_thunk\w*|srso_\w+|entry_untrain_ret|retbleed_\w+|call_depth_return_thunk|__x86_indirect_call_thunk\w*)$"),
    ("idle", r"^(default_idle\w*|cpuidle_\w+|haltpoll_\w+|arch_cpu_idle\w*|do_idle|cpu_startup_entry|pv_native_safe_halt|native_safe_halt|default_enter_idle|tick_nohz_\w+|kvm_para_available|cpuidle_idle_call|start_secondary|poll_idle|call_cpuidle|menu_select|nohz_\w+)$"),
    ("page fault/mm", r"^(handle_mm_fault|__handle_mm_fault|do_anonymous_page|do_user_addr_fault|exc_page_fault|asm_exc_page_fault|clear_page\w*|do_fault|filemap_\w+|alloc_pages\w*|__alloc_pages\w*|get_page_from_freelist|lru_\w+|folio_\w+|zap_\w+|unmap_\w+|tlb_\w+|flush_tlb\w*|madvise\w*|__x64_sys_madvise|do_madvise|mprotect\w*|mmap\w*|vma_\w+|do_vmi\w*|__vm_munmap|release_pages|free_pages_and_swap_cache)$"),
    ("irq/timer tick", r"^(sysvec_\w+|asm_sysvec_\w+|__sysvec_\w+|tick_sched_\w+|tick_handle\w*|update_process_times|scheduler_tick|sched_tick|account_\w+|irq_enter\w*|irq_exit\w*|__irq_exit_rcu|handle_irq_event\w*|generic_smp_call_function_single_interrupt|__flush_smp_call_function_queue|flush_smp_call_function_queue|sched_ttwu_pending|rcu_\w+|run_timer_softirq|__run_timers|call_timer_fn|task_tick_\w+|trigger_load_balance|perf_\w+|__perf_\w+)$"),
    ("socket lifecycle (rotation)", r"^(__sys_socket|sock_create|__sock_create|inet_create|sk_alloc|udp_init_sock|sock_alloc_file|alloc_file\w*|__sys_bind|inet_bind\w*|__inet_bind|udp_v4_get_port|udp_lib_get_port|__sys_connect\w*|ip4_datagram_connect|__ip4_datagram_connect|udp_lib_rehash|udp_v4_rehash|__fput|sock_close|__sock_release|inet_release|udp_lib_close|sk_common_release|udp_destroy_sock|sk_free|__sk_free|sk_destruct|__sk_destruct|do_epoll_ctl|ep_insert|ep_remove\w*|ep_free|__x64_sys_epoll_ctl|__x64_sys_socket|__x64_sys_bind|__x64_sys_connect|__x64_sys_close|close_fd|filp_close|file_close_fd|sock_setsockopt|sk_setsockopt|do_sock_setsockopt|__x64_sys_setsockopt|udp_lib_unhash|inet_sk_rx_dst_set|__x64_sys_ioctl|sock_ioctl|do_vfs_ioctl|d_alloc_pseudo|alloc_inode|new_inode_pseudo|sock_alloc|sock_alloc_inode|destroy_inode|evict|dput|__dentry_kill)$"),
]
GROUP_RE = [(name, re.compile(rx)) for name, rx in GROUPS]
# Generic helpers: a sample in one of them belongs to the nearest caller that matches a group.
SKIP = re.compile(r"^(_raw_spin\w*|native_queued_spin\w*|queued_spin\w*|__raw_spin\w*|do_raw_spin\w*|preempt_\w+|__local_bh_disable_ip|local_bh_\w+|__rcu_read_\w+|rcu_read_\w+|\[unknown\]|.*\.cold|__cond_resched|_cond_resched|lock_sock_nested|release_sock|__release_sock|__srcu_read\w*|native_irq_\w+|arch_local_irq\w*|__x86_return_thunk|__x86_indirect_thunk\w*)$")

# The rows of the printed table and the fine groups each sums; anything else is "other".
TABLE = [
    ("user", ["user"]),
    ("syscall entry/exit", ["syscall entry/exit"]),
    ("UDP/IP send (udp_sendmsg .. loopback_xmit)", ["udp/ip tx"]),
    ("loopback delivery inside the send (rx softirq)", ["udp/ip rx (softirq)"]),
    ("waking the peer (sock_def_readable, ttwu, IPI)", ["waitqueue", "ttwu", "ipi/wakeup-remote", "epoll-callback"]),
    ("UDP receive (udp_recvmsg)", ["udp rx (recvmsg)"]),
    ("msghdr/iovec/fd lookup", ["msghdr/iovec"]),
    ("data copy (to/from user)", ["copy"]),
    ("socket memory accounting", ["sk-mem-accounting"]),
    ("skb alloc/free", ["skb-alloc", "skb-free"]),
    ("route lookup", ["route"]),
    ("epoll_wait", ["epoll_wait"]),
    ("scheduler (sleep, context switch)", ["sched"]),
    ("hrtimer (epoll timeout)", ["hrtimer/clockevent"]),
    ("socket rotation (socket/bind/connect/close)", ["socket lifecycle (rotation)"]),
]
OTHER = "other (ticks, page faults, unmatched)"
ROW_OF = {g: row for row, gs in TABLE for g in gs}
KERNEL_ADDR = 0xFFFF800000000000


def group_of(frames):
    """frames: [(ip, sym, dso)], leaf first -> (fine group, kernel leaf unresolved?)."""
    if not frames:
        return "user", False
    ip, sym, dso = frames[0]
    kernel = "kernel" in dso or dso.startswith("[k") or ip >= KERNEL_ADDR
    if not kernel:
        return "user", False
    for _, s, _ in frames:
        if SKIP.match(s):
            continue
        for name, rx in GROUP_RE:
            if rx.match(s):
                return name, False
    return "?", sym == "[unknown]" or sym.startswith("0x")


def summary(d):
    kv = {}
    with open(os.path.join(d, "summary.txt")) as f:
        for line in f:
            for tok in line.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    kv[k] = v
    return kv


def sampled(d, pid):
    """Sampled ns of the server's pid by fine group ("_unresolved": kernel samples without a
    symbol), from RUNDIR/groups.tsv or else from perf script."""
    cache = os.path.join(d, "groups.tsv")
    if os.path.exists(cache):
        with open(cache) as f:
            return {k: float(v) for k, v in (line.rstrip("\n").split("\t") for line in f if "\t" in line)}
    ns = defaultdict(float)
    head = re.compile(r"^(\S.*?)\s+(\d+)/(\d+)\s+(\d+)\s*$")
    frame = re.compile(r"^\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$")
    proc = subprocess.Popen(["perf", "script", "-i", os.path.join(d, "perf.data"), "--pid", str(pid),
                             "-F", "comm,pid,tid,period,ip,sym,dso", "--no-inline"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace")
    period, frames = None, []

    def flush():
        if period is not None:
            g, unresolved = group_of(frames)
            ns[g] += period
            if unresolved:
                ns["_unresolved"] += period

    for line in proc.stdout:
        m = frame.match(line)
        if m:
            frames.append((int(m.group(1), 16), re.sub(r"\+0x[0-9a-f]+$", "", m.group(2)), m.group(3)))
            continue
        m = head.match(line)
        if m:
            flush()
            period = int(m.group(4)) if int(m.group(2)) == pid else None
            frames = []
    flush()
    if proc.wait() != 0:
        sys.exit(f"kernel_cost.py: perf script failed on {d}")
    with open(cache, "w") as f:
        for k, v in sorted(ns.items()):
            f.write(f"{k}\t{v:.0f}\n")
    return dict(ns)


def main():
    runs = [d for d in sys.argv[1:] if os.path.exists(os.path.join(d, "summary.txt"))]
    if not runs:
        sys.exit("usage: kernel_cost.py RUNDIR...  (folders with summary.txt and perf.data)")
    cols = {}  # row name -> list of per-run dicts
    unresolved = 0.0
    kernel_sampled = 0.0
    for d in runs:  # columns in the order of their first run
        kv = summary(d)
        answered, cpu_ns = int(kv["answered"]), int(kv["cpu_ns"])
        if answered < 1:
            print(f"kernel_cost.py: {d}: no answers, left out", file=sys.stderr)
            continue
        ns = sampled(d, int(kv["pid"]))
        unresolved += ns.pop("_unresolved", 0.0)
        total = sum(ns.values())
        kernel_sampled += total - ns.get("user", 0.0)
        if total <= 0:
            print(f"kernel_cost.py: {d}: no samples of pid {kv['pid']}, left out", file=sys.stderr)
            continue
        if cpu_ns <= 0:
            print(f"kernel_cost.py: {d}: no schedstat CPU time, left out", file=sys.stderr)
            continue
        scale = cpu_ns / total  # sampled ns -> schedstat ns
        per_q = defaultdict(float)
        for g, v in ns.items():
            per_q[ROW_OF.get(g, OTHER)] += v * scale / answered
        cols.setdefault(kv["row"], []).append({
            "groups": per_q, "cpu": cpu_ns / answered, "coverage": total / cpu_ns,
            "qps": float(kv.get("qps", 0) or 0),
        })
    if not cols:
        sys.exit("kernel_cost.py: no usable runs")

    def mean(xs):
        return sum(xs) / len(xs)

    names = list(cols)
    rows = [r for r, _ in TABLE] + [OTHER]
    print("| ns per answered query (share of its CPU) | " + " | ".join(names) + " |")
    print("|---|" + "--:|" * len(names))
    for r in rows:
        cells = []
        for n in names:
            v = mean([run["groups"].get(r, 0.0) for run in cols[n]])
            cpu = mean([run["cpu"] for run in cols[n]])
            cells.append(f"{v:,.0f} ({100 * v / cpu:.1f}%)")
        print(f"| {r} | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        cpu = mean([run["cpu"] for run in cols[n]])
        k = mean([run["cpu"] - run["groups"].get("user", 0.0) for run in cols[n]])
        cells.append(f"**{k:,.0f} ({100 * k / cpu:.0f}%)**")
    print("| **kernel total (kernel share)** | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        cpus = [run["cpu"] for run in cols[n]]
        spread = f" ({min(cpus):,.0f}–{max(cpus):,.0f})" if len(cpus) > 1 else ""
        cells.append(f"**{mean(cpus):,.0f}**{spread}")
    print("| **CPU per miss, ns (schedstat)** | " + " | ".join(cells) + " |")
    print("| answered q/s | " + " | ".join(f"{mean([run['qps'] for run in cols[n]]):,.0f}" for n in names) + " |")
    print("| perf samples / schedstat | " + " | ".join(f"{100 * mean([run['coverage'] for run in cols[n]]):.0f}%" for n in names) + " |")
    print("| runs | " + " | ".join(str(len(cols[n])) for n in names) + " |")
    if kernel_sampled > 0 and unresolved / kernel_sampled > 0.05:
        print(f"\nWARNING: {100 * unresolved / kernel_sampled:.0f}% of the kernel samples have no symbol "
              "(kernel symbols hidden: kptr_restrict, or perf not run as root); they count as other.")


if __name__ == "__main__":
    main()
