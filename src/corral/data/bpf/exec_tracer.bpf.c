// The exec tracer as a compiled BPF object, loaded through libbpf (corral/monitor/_libbpf.py).
//
// It writes the same records as the bpftrace program in corral/monitor/_bpftrace.py (one
// struct per record instead of one printf line), so the collector treats both alike.
// Tracepoints only (raw ones); kernel structures are read with CO-RE relocations against the
// running kernel's BTF, so one object runs on every kernel with BTF. Every record carries its CPU and
// that CPU's sequence number, argument records included: a record the ring buffer could not
// take leaves a gap that the reader reports.
//
// Built with: clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -DSTRLEN=N -DMAXARGS=N (_bpfobject.py).

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#ifndef STRLEN
#define STRLEN 200
#endif
#ifndef MAXARGS
#define MAXARGS 64
#endif

char LICENSE[] SEC("license") = "GPL";

// Only the fields used, relocated by name against the kernel's own layout.
struct sched_entity {
  __u64 sum_exec_runtime;
} __attribute__((preserve_access_index));

struct signal_struct {
  __u64 sum_sched_runtime;
} __attribute__((preserve_access_index));

struct task_struct {
  int pid;
  int tgid;
  int exit_code;
  struct task_struct *real_parent;
  struct sched_entity se;
  struct signal_struct *signal;
} __attribute__((preserve_access_index));

struct linux_binprm {
  const char *filename;
} __attribute__((preserve_access_index));

// Raw tracepoints, not perf-event ones: they attach and detach in microseconds, where each
// perf-event tracepoint waits out an RCU grace period when it is detached (70 ms apiece).
// sys_enter and sys_exit see every syscall; the number picks the few traced here.
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
  unsigned long di, si, dx, orig_ax;
  unsigned short cs;
} __attribute__((preserve_access_index));
#define ARG0(r) BPF_CORE_READ(r, di)
#define ARG1(r) BPF_CORE_READ(r, si)
#define ARG2(r) BPF_CORE_READ(r, dx)
#define NR_AT_EXIT(r) BPF_CORE_READ(r, orig_ax)
// A 32-bit task's syscall numbers mean other calls (its 11 is execve, 64-bit munmap): those
// execs are left to sched_process_exec, which sees every exec.
#define NATIVE(r) (BPF_CORE_READ(r, cs) == 0x33)
#define NR_EXECVE 59
#define NR_EXECVEAT 322
#define NR_GETPRIORITY 140
#elif defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
  __u64 regs[31];
  __u64 sp, pc, pstate;
} __attribute__((preserve_access_index));
struct pt_regs {
  struct user_pt_regs user_regs;
  __u64 orig_x0;
  __s32 syscallno;
} __attribute__((preserve_access_index));
#define ARG0(r) BPF_CORE_READ(r, orig_x0)
#define ARG1(r) BPF_CORE_READ(r, user_regs.regs[1])
#define ARG2(r) BPF_CORE_READ(r, user_regs.regs[2])
#define NR_AT_EXIT(r) BPF_CORE_READ(r, syscallno)
#define NATIVE(r) ((BPF_CORE_READ(r, user_regs.pstate) & 0x10) == 0)  // PSR_MODE32_BIT clear
#define NR_EXECVE 221
#define NR_EXECVEAT 281
#define NR_GETPRIORITY 141
#else
#error "exec_tracer.bpf.c knows the syscall ABI of x86_64 and arm64 only"
#endif

struct config {
  __u64 exclude_cgroup;  // the collector's own cgroup: its execs are not traced
  __u64 marker;          // the getpriority "which" of this collector's sync markers
  __u32 uid_lo, uid_hi;  // traced uids, when use_uid
  __u32 use_uid;
  __u32 pad;
};

// tag, cpu, seq; then up to seven numbers; then a string (its length counts the NUL).
struct record {
  __u32 tag;
  __u32 cpu;
  __u64 seq;
  __u64 v[7];
  __u32 len;
  char s[STRLEN];
};
#define NUMBERS_ONLY (__builtin_offsetof(struct record, len))

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct config);
} config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} seqs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 64 << 20);  // set by the loader from the number of CPUs
} records SEC(".maps");

static __always_inline struct config *cfg(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&config, &zero);
}

// True for tasks this collector does not trace: its own cgroup, and uids outside the range.
static __always_inline int skip(void) {
  struct config *c = cfg();
  if (!c)
    return 1;
  if (bpf_get_current_cgroup_id() == c->exclude_cgroup)
    return 1;
  if (c->use_uid) {
    __u32 uid = (__u32)bpf_get_current_uid_gid();
    if (uid < c->uid_lo || uid >= c->uid_hi)
      return 1;
  }
  return 0;
}

// A record with the next sequence number of this CPU; the number is taken even when the ring
// buffer is full, so the loss shows as a gap.
static __always_inline struct record *reserve(__u32 tag, __u64 size) {
  __u32 zero = 0;
  __u64 *seq = bpf_map_lookup_elem(&seqs, &zero);
  if (!seq)
    return 0;
  __u64 s = *seq;
  *seq = s + 1;
  struct record *r;
  if (size == NUMBERS_ONLY)
    r = bpf_ringbuf_reserve(&records, NUMBERS_ONLY, 0);
  else
    r = bpf_ringbuf_reserve(&records, sizeof(struct record), 0);
  if (!r)
    return 0;
  r->tag = tag;
  r->cpu = bpf_get_smp_processor_id();
  r->seq = s;
  return r;
}

static __always_inline void marker(struct pt_regs *regs) {
  struct config *c = cfg();
  if (!c || (__u32)ARG0(regs) != (__u32)c->marker)
    return;
  struct record *r = reserve('S', NUMBERS_ONLY);
  if (!r)
    return;
  r->v[0] = bpf_ktime_get_ns();
  r->v[1] = r->cpu;
  r->v[2] = (__u32)ARG1(regs);
  bpf_ringbuf_submit(r, 0);
}

// sched_process_fork(parent, child)
SEC("raw_tracepoint/sched_process_fork")
int on_fork(struct bpf_raw_tracepoint_args *ctx) {
  if (skip())
    return 0;
  struct task_struct *child = (struct task_struct *)ctx->args[1];
  struct record *r = reserve('K', NUMBERS_ONLY);
  if (!r)
    return 0;
  r->v[0] = bpf_ktime_get_ns();
  r->v[1] = bpf_get_current_pid_tgid() >> 32;
  r->v[2] = BPF_CORE_READ(child, pid);
  r->v[3] = bpf_get_current_cgroup_id();
  bpf_ringbuf_submit(r, 0);
  return 0;
}

struct args_walk {
  const char *const *argv;
  __u32 tid;
  __u32 count;
  __u32 more;
};

// One argument (a bpf_loop callback, so the verifier checks one step, not MAXARGS of them).
static long one_arg(__u64 i, struct args_walk *w) {
  const char *p = 0;
  if (bpf_probe_read_user(&p, sizeof(p), &w->argv[i]) != 0 || !p) {
    w->more = 0;
    return 1;
  }
  w->count = i + 1;
  struct record *a = reserve('A', sizeof(struct record));
  if (!a)
    return 0;
  a->v[0] = w->tid;
  long n = bpf_probe_read_user_str(a->s, STRLEN, p);
  a->len = n > 0 ? n : 0;
  bpf_ringbuf_submit(a, 0);
  return 0;
}

// E (the file), one A per argument, then F (how many, and whether more were left unread).
static __always_inline void exec_enter(const char *filename, const char *const *argv) {
  if (skip())
    return;
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct record *r = reserve('E', sizeof(struct record));
  if (!r)
    return;
  r->v[0] = bpf_ktime_get_ns();
  r->v[1] = tid;
  r->v[2] = bpf_get_current_cgroup_id();
  long n = bpf_probe_read_user_str(r->s, STRLEN, filename);
  r->len = n > 0 ? n : 0;
  bpf_ringbuf_submit(r, 0);
  struct args_walk w = {.argv = argv, .tid = tid, .count = 0, .more = 1};
  bpf_loop(MAXARGS, one_arg, &w, 0);
  struct record *f = reserve('F', NUMBERS_ONLY);
  if (!f)
    return;
  f->v[0] = tid;
  f->v[1] = w.count;
  f->v[2] = w.more;
  bpf_ringbuf_submit(f, 0);
}

// sys_enter(regs, id)
SEC("raw_tracepoint/sys_enter")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx) {
  long id = ctx->args[1];
  if (id != NR_GETPRIORITY && id != NR_EXECVE && id != NR_EXECVEAT)
    return 0;
  struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
  if (!NATIVE(regs))
    return 0;
  if (id == NR_GETPRIORITY)
    marker(regs);
  else if (id == NR_EXECVE)
    exec_enter((const char *)ARG0(regs), (const char *const *)ARG1(regs));
  else
    exec_enter((const char *)ARG1(regs), (const char *const *)ARG2(regs));
  return 0;
}

// Failed execs the call should hear of: permission denied (-13) and not permitted (-1).
static __always_inline void exec_exit(__s64 ret) {
  if ((ret != -13 && ret != -1) || skip())
    return;
  struct record *r = reserve('R', NUMBERS_ONLY);
  if (!r)
    return;
  r->v[0] = bpf_ktime_get_ns();
  r->v[1] = (__u32)bpf_get_current_pid_tgid();
  r->v[2] = bpf_get_current_cgroup_id();
  r->v[3] = (__u64)ret;
  bpf_ringbuf_submit(r, 0);
}

// sys_exit(regs, ret)
SEC("raw_tracepoint/sys_exit")
int on_sys_exit(struct bpf_raw_tracepoint_args *ctx) {
  __s64 ret = ctx->args[1];
  if (ret != -13 && ret != -1)
    return 0;
  struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
  long id = NR_AT_EXIT(regs);
  if ((id == NR_EXECVE || id == NR_EXECVEAT) && NATIVE(regs))
    exec_exit(ret);
  return 0;
}

// sched_process_exec(task, old_pid, bprm)
SEC("raw_tracepoint/sched_process_exec")
int on_exec_done(struct bpf_raw_tracepoint_args *ctx) {
  if (skip())
    return 0;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
  struct record *r = reserve('X', sizeof(struct record));
  if (!r)
    return 0;
  r->v[0] = bpf_ktime_get_ns();
  r->v[1] = bpf_get_current_pid_tgid() >> 32;
  r->v[2] = (__u32)ctx->args[1];
  r->v[3] = BPF_CORE_READ(task, real_parent, tgid);
  r->v[4] = (__u32)bpf_get_current_uid_gid();
  r->v[5] = bpf_get_current_cgroup_id();
  long n = bpf_probe_read_kernel_str(r->s, STRLEN, BPF_CORE_READ(bprm, filename));
  r->len = n > 0 ? n : 0;
  bpf_ringbuf_submit(r, 0);
  return 0;
}

// sched_process_exit(task, ...)
SEC("raw_tracepoint/sched_process_exit")
int on_exit(void *ctx) {
  __u64 id = bpf_get_current_pid_tgid();
  if ((__u32)id != (id >> 32) || skip())  // the thread-group leader only: the process's exit
    return 0;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  struct record *r = reserve('Q', NUMBERS_ONLY);
  if (!r)
    return 0;
  r->v[0] = bpf_ktime_get_ns();
  r->v[1] = id >> 32;
  r->v[2] = bpf_get_current_cgroup_id();
  r->v[3] = BPF_CORE_READ(task, exit_code);
  r->v[4] = BPF_CORE_READ(task, se.sum_exec_runtime) + BPF_CORE_READ(task, signal, sum_sched_runtime);
  bpf_ringbuf_submit(r, 0);
  return 0;
}
