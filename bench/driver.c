// Workload driver of the layerfs benchmark (bench/run compiles it with cc -O2).
//
// One small program for every system, so the client side of each workload is the
// same code and costs the same everywhere. Each subcommand times its own work
// with CLOCK_MONOTONIC and prints one JSON line on stdout:
//   {"seconds": S, "count": N, "user": U, "sys": S, "note": "..."}
// where user/sys are this process's (and its children's) CPU seconds.
//
// Usage: driver [--sync DIR]... SUBCOMMAND ARGS...
//   walk DIR               recursive openat + getdents + fstatat(AT_SYMLINK_NOFOLLOW) of every entry
//   list DIR               getdents + fstatat of every entry of one directory (like ls -l)
//   readall DIR            walk DIR and read every regular file to its end (64 KiB reads)
//   seqread FILE           read FILE to its end with 1 MiB reads
//   append FILE            open O_WRONLY|O_APPEND, write one byte, fsync, close
//   appendlist ROOT LIST   for each path in LIST (relative to ROOT): open O_WRONLY|O_APPEND, write one byte, close
//   create DIR N SIZE      mkdir DIR; create N files of SIZE bytes, 100 per subdirectory
//   unlinklist ROOT LIST   unlink each path of LIST (relative to ROOT), then list (getdents + fstatat)
//                          every directory that held one
//   rename FROM TO         rename(2); on EXDEV falls back to what mv(1) does (runs mv), note "exdev"
//   seqwrite FILE BYTES    create FILE, write BYTES with 1 MiB writes, fsync, close
//   run CMD ARGS...        run a command (tar, fio), wait for it; its stdout goes to stderr
// After the subcommand, each --sync DIR is opened and syncfs(2)ed; that is part of the timing.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *note = "";

static void die(const char *what, const char *path) {
  fprintf(stderr, "driver: %s %s: %s\n", what, path ? path : "", strerror(errno));
  exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct linux_dirent64 {
  unsigned long long d_ino;
  long long d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

static char dentbuf[1 << 16];
static char databuf[1 << 20];

// Calls fn(dirfd, name, st) for every entry of the directory open at fd (not . and ..).
typedef void (*entry_fn)(int dirfd, const char *name, const struct stat *st, void *arg);

static long list_fd(int fd, entry_fn fn, void *arg, const char *what) {
  long n = 0;
  for (;;) {
    long got = syscall(SYS_getdents64, fd, dentbuf, sizeof dentbuf);
    if (got < 0) die("getdents64", what);
    if (got == 0) break;
    for (long off = 0; off < got;) {
      struct linux_dirent64 *d = (struct linux_dirent64 *)(dentbuf + off);
      off += d->d_reclen;
      if (d->d_name[0] == '.' && (d->d_name[1] == 0 || (d->d_name[1] == '.' && d->d_name[2] == 0)))
        continue;
      struct stat st;
      if (fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) die("fstatat", d->d_name);
      n++;
      if (fn) fn(fd, d->d_name, &st, arg);
    }
  }
  return n;
}

// Depth-first walk. getdents fills a shared buffer, so the names of subdirectories are
// collected first and descended into after the directory has been read.
struct walk {
  long entries;
  int read_files;
};

struct names {
  char **v;
  size_t n, cap;
};

static void collect(int dirfd, const char *name, const struct stat *st, void *arg) {
  struct names *ns = arg;
  (void)dirfd;
  if (S_ISDIR(st->st_mode)) {
    if (ns->n == ns->cap) {
      ns->cap = ns->cap ? ns->cap * 2 : 16;
      ns->v = realloc(ns->v, ns->cap * sizeof *ns->v);
    }
    ns->v[ns->n++] = strdup(name);
  }
}

static void read_fd(int fd, const char *what) {
  for (;;) {
    ssize_t r = read(fd, databuf, 1 << 16);
    if (r < 0) die("read", what);
    if (r == 0) break;
  }
}

static void read_file_cb(int dirfd, const char *name, const struct stat *st, void *arg) {
  collect(dirfd, name, st, arg);
  if (S_ISREG(st->st_mode)) {
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW);
    if (fd < 0) die("open", name);
    read_fd(fd, name);
    close(fd);
  }
}

// Lists the directory, then descends into its subdirectories; closes fd.
static void walk_rec(int fd, struct walk *w) {
  struct names ns = {0};
  w->entries += list_fd(fd, w->read_files ? read_file_cb : collect, &ns, "dir");
  for (size_t i = 0; i < ns.n; i++) {
    int c = openat(fd, ns.v[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (c < 0) die("open dir", ns.v[i]);
    walk_rec(c, w);
    free(ns.v[i]);
  }
  free(ns.v);
  close(fd);
}

static int open_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY);
  if (fd < 0) die("open dir", path);
  return fd;
}

static char **read_list(const char *listfile, size_t *count) {
  FILE *f = fopen(listfile, "r");
  if (!f) die("open list", listfile);
  size_t cap = 1024, n = 0;
  char **v = malloc(cap * sizeof *v);
  char line[PATH_MAX];
  while (fgets(line, sizeof line, f)) {
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n')) line[--len] = 0;
    if (!len) continue;
    if (n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
    v[n++] = strdup(line);
  }
  fclose(f);
  *count = n;
  return v;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static long run_cmd(char **argv) {
  pid_t pid = fork();
  if (pid < 0) die("fork", argv[0]);
  if (pid == 0) {
    dup2(2, 1);
    execvp(argv[0], argv);
    fprintf(stderr, "driver: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) < 0) die("waitpid", argv[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "driver: %s failed (status %d)\n", argv[0], status);
    exit(1);
  }
  return 1;
}

static void usage(void) {
  fprintf(stderr, "usage: driver [--sync DIR]... walk|list|readall|seqread|append|appendlist|create|"
                  "unlinklist|rename|seqwrite|run ARGS...\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *syncs[16];
  int nsync = 0;
  int a = 1;
  while (a + 1 < argc && strcmp(argv[a], "--sync") == 0) {
    if (nsync == 16) usage();
    syncs[nsync++] = argv[a + 1];
    a += 2;
  }
  if (a >= argc) usage();
  const char *cmd = argv[a++];
  int nargs = argc - a;
  char **args = argv + a;
  long count = 0;

  double t0 = now();
  if (!strcmp(cmd, "walk") || !strcmp(cmd, "readall")) {
    if (nargs != 1) usage();
    struct walk w = {0, !strcmp(cmd, "readall")};
    walk_rec(open_dir(args[0]), &w);
    count = w.entries;
  } else if (!strcmp(cmd, "list")) {
    if (nargs != 1) usage();
    int fd = open_dir(args[0]);
    count = list_fd(fd, NULL, NULL, args[0]);
    close(fd);
  } else if (!strcmp(cmd, "seqread")) {
    if (nargs != 1) usage();
    int fd = open(args[0], O_RDONLY);
    if (fd < 0) die("open", args[0]);
    for (;;) {
      ssize_t r = read(fd, databuf, sizeof databuf);
      if (r < 0) die("read", args[0]);
      if (r == 0) break;
      count += r;
    }
    close(fd);
  } else if (!strcmp(cmd, "append")) {
    if (nargs != 1) usage();
    int fd = open(args[0], O_WRONLY | O_APPEND);
    if (fd < 0) die("open", args[0]);
    if (write(fd, "x", 1) != 1) die("write", args[0]);
    if (fsync(fd) != 0) die("fsync", args[0]);
    close(fd);
    count = 1;
  } else if (!strcmp(cmd, "appendlist")) {
    if (nargs != 2) usage();
    size_t n;
    char **v = read_list(args[1], &n);
    int root = open_dir(args[0]);
    t0 = now();  // reading the list is not part of the work
    for (size_t i = 0; i < n; i++) {
      int fd = openat(root, v[i], O_WRONLY | O_APPEND);
      if (fd < 0) die("open", v[i]);
      if (write(fd, "x", 1) != 1) die("write", v[i]);
      close(fd);
    }
    count = (long)n;
  } else if (!strcmp(cmd, "create")) {
    if (nargs != 3) usage();
    long n = atol(args[1]);
    size_t size = (size_t)atol(args[2]);
    if (size > sizeof databuf) size = sizeof databuf;
    memset(databuf, 'c', size);
    if (mkdir(args[0], 0755) != 0) die("mkdir", args[0]);
    int top = open_dir(args[0]);
    int sub = -1;
    char name[64];
    for (long i = 0; i < n; i++) {
      if (i % 100 == 0) {
        if (sub >= 0) close(sub);
        snprintf(name, sizeof name, "d%04ld", i / 100);
        if (mkdirat(top, name, 0755) != 0) die("mkdir", name);
        sub = openat(top, name, O_RDONLY | O_DIRECTORY);
        if (sub < 0) die("open", name);
      }
      snprintf(name, sizeof name, "f%06ld", i);
      int fd = openat(sub, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0) die("create", name);
      if (size && write(fd, databuf, size) != (ssize_t)size) die("write", name);
      close(fd);
    }
    if (sub >= 0) close(sub);
    close(top);
    count = n;
  } else if (!strcmp(cmd, "unlinklist")) {
    if (nargs != 2) usage();
    size_t n;
    char **v = read_list(args[1], &n);
    int root = open_dir(args[0]);
    // the parent directories, computed before timing
    char **dirs = malloc(n * sizeof *dirs);
    for (size_t i = 0; i < n; i++) {
      dirs[i] = strdup(v[i]);
      char *slash = strrchr(dirs[i], '/');
      if (slash) *slash = 0; else strcpy(dirs[i], ".");
    }
    qsort(dirs, n, sizeof *dirs, cmp_str);
    t0 = now();
    for (size_t i = 0; i < n; i++)
      if (unlinkat(root, v[i], 0) != 0) die("unlink", v[i]);
    for (size_t i = 0; i < n; i++) {
      if (i && !strcmp(dirs[i], dirs[i - 1])) continue;
      int fd = openat(root, dirs[i], O_RDONLY | O_DIRECTORY);
      if (fd < 0) die("open dir", dirs[i]);
      list_fd(fd, NULL, NULL, dirs[i]);
      close(fd);
    }
    count = (long)n;
  } else if (!strcmp(cmd, "rename")) {
    if (nargs != 2) usage();
    if (rename(args[0], args[1]) != 0) {
      if (errno != EXDEV) die("rename", args[0]);
      note = "exdev: copied by mv(1)";
      char *mv[] = {"mv", "-T", args[0], args[1], NULL};
      run_cmd(mv);
    }
    count = 1;
  } else if (!strcmp(cmd, "seqwrite")) {
    if (nargs != 2) usage();
    long long total = atoll(args[1]);
    memset(databuf, 'w', sizeof databuf);
    int fd = open(args[0], O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) die("create", args[0]);
    for (long long done = 0; done < total;) {
      size_t chunk = total - done < (long long)sizeof databuf ? (size_t)(total - done) : sizeof databuf;
      ssize_t w = write(fd, databuf, chunk);
      if (w <= 0) die("write", args[0]);
      done += w;
    }
    if (fsync(fd) != 0) die("fsync", args[0]);
    close(fd);
    count = (long)(total >> 20);
  } else if (!strcmp(cmd, "run")) {
    if (nargs < 1) usage();
    count = run_cmd(args);
  } else {
    usage();
  }
  for (int i = 0; i < nsync; i++) {
    int fd = open_dir(syncs[i]);
    if (syncfs(fd) != 0) die("syncfs", syncs[i]);
    close(fd);
  }
  double secs = now() - t0;

  struct rusage self, kids;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  double user = self.ru_utime.tv_sec + self.ru_utime.tv_usec / 1e6 + kids.ru_utime.tv_sec +
                kids.ru_utime.tv_usec / 1e6;
  double sys = self.ru_stime.tv_sec + self.ru_stime.tv_usec / 1e6 + kids.ru_stime.tv_sec +
               kids.ru_stime.tv_usec / 1e6;
  printf("{\"seconds\": %.6f, \"count\": %ld, \"user\": %.3f, \"sys\": %.3f, \"note\": \"%s\"}\n", secs,
         count, user, sys, note);
  return 0;
}
