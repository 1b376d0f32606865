package kv

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/dgraph-io/ristretto/v2/z"
	"google.golang.org/protobuf/proto"
)

// Checks before Badger opens a directory.
//
// Badger trusts its MANIFEST: a directory whose MANIFEST is missing is
// opened as a new, empty store, and every table file (.sst) the new
// MANIFEST does not list is deleted. Tables are opened in goroutines that
// Badger starts, so a torn table file panics where no caller can recover.
// A damaged tail of a memtable file (the write-ahead log) is cut off at
// replay without a word. kv looks at the directory first:
//
//   - table, memtable or value-log files without a MANIFEST, or with an
//     empty or unreadable one, or a MANIFEST listing a table file that is
//     missing: ErrDamaged, and Badger is not started;
//   - every table the MANIFEST lists is opened and all its blocks are
//     checked (checksums, structure) in kv's own goroutines, where a panic
//     is caught: a damaged table is ErrDamaged naming the file;
//   - table files the MANIFEST never mentioned (left by a flush or
//     compaction that a crash interrupted, or by a MANIFEST that lost its
//     end) are moved to orphaned-tables/ instead of being deleted by
//     Badger, and logged;
//   - an encrypted store without its KEYREGISTRY is ErrDamaged (its data
//     keys are gone).
//
// The watermark (see UpdateWatermarked) catches what these checks cannot:
// updates lost from the write-ahead log.

const (
	manifestFile = badger.ManifestFilename
	keyRegistry  = badger.KeyRegistryFileName
	orphanDir    = "orphaned-tables"
)

// manifestInfo is what the MANIFEST says.
type manifestInfo struct {
	tables    map[uint64]badger.TableManifest // live tables
	mentioned map[uint64]bool                 // ever created or deleted
	tornBytes int64                           // bytes after the last complete change set
}

// readManifest parses a MANIFEST (read-only). Problems are *DamageError.
func readManifest(dir string, lg badger.Logger) (*manifestInfo, error) {
	p := filepath.Join(dir, manifestFile)
	f, err := os.Open(p)
	if err != nil {
		return nil, damaged(dir, manifestFile, "cannot read the MANIFEST: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, damaged(dir, manifestFile, "cannot read the MANIFEST: %v", err)
	}
	if st.Size() == 0 {
		return nil, damaged(dir, manifestFile, "the MANIFEST is empty (it lists the table files; Badger would treat the store as new and delete them)")
	}
	// Badger's own reader checks magic, version and checksums.
	m, trunc, err := badger.ReplayManifestFile(f, 0, badger.DefaultOptions("").WithLogger(lg))
	if err != nil {
		return nil, damaged(dir, manifestFile, "the MANIFEST is unreadable: %v", err)
	}
	info := &manifestInfo{tables: m.Tables, mentioned: map[uint64]bool{}, tornBytes: st.Size() - trunc}
	// Our own pass for the ids ever mentioned (Badger keeps only the live
	// ones). The format was just checked.
	if _, err := f.Seek(8, io.SeekStart); err != nil {
		return nil, damaged(dir, manifestFile, "cannot read the MANIFEST: %v", err)
	}
	r := bufio.NewReader(io.LimitReader(f, trunc-8))
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break
		}
		n := uint32(hdr[0])<<24 | uint32(hdr[1])<<16 | uint32(hdr[2])<<8 | uint32(hdr[3])
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			break
		}
		var cs pb.ManifestChangeSet
		if crc32.Checksum(buf, crc32.MakeTable(crc32.Castagnoli)) != uint32(hdr[4])<<24|uint32(hdr[5])<<16|uint32(hdr[6])<<8|uint32(hdr[7]) ||
			proto.Unmarshal(buf, &cs) != nil {
			break
		}
		for _, c := range cs.Changes {
			info.mentioned[c.Id] = true
		}
	}
	return info, nil
}

// dirFiles lists the Badger files of a directory.
type dirFiles struct {
	tables   map[uint64]int64 // id -> size
	mems     map[string]int64 // name -> size
	vlogs    map[string]int64
	manifest bool
	registry bool
	other    bool // DISCARD
}

func listDir(dir string) (*dirFiles, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	d := &dirFiles{tables: map[uint64]int64{}, mems: map[string]int64{}, vlogs: map[string]int64{}}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		name := e.Name()
		switch {
		case name == manifestFile:
			d.manifest = true
		case name == keyRegistry:
			d.registry = true
		case name == "DISCARD":
			d.other = true
		case strings.HasSuffix(name, ".sst"):
			if id, ok := table.ParseFileID(name); ok {
				d.tables[id] = info.Size()
			}
		case strings.HasSuffix(name, ".mem"):
			d.mems[name] = info.Size()
		case strings.HasSuffix(name, ".vlog"):
			d.vlogs[name] = info.Size()
		}
	}
	return d, nil
}

// inspection is the result of looking at a directory before opening it.
type inspection struct {
	files    *dirFiles
	manifest *manifestInfo
	orphans  []string // table files never mentioned by the MANIFEST
	replay   []string // memtable files Badger will replay
}

// inspect checks dir as described above. It changes nothing.
func inspect(dir string, o Options, lg *slog.Logger) (*inspection, error) {
	files, err := listDir(dir)
	if err != nil {
		return nil, err
	}
	in := &inspection{files: files}
	for name, size := range files.mems {
		if size > 0 {
			in.replay = append(in.replay, name)
		}
	}
	sort.Strings(in.replay)
	hasData := len(files.tables) > 0 || len(in.replay) > 0 || len(files.vlogs) > 0 || files.registry || files.other
	if !files.manifest {
		if !hasData {
			return in, nil // a new store
		}
		return nil, damaged(dir, manifestFile, "the MANIFEST is missing but the directory holds %s (without it Badger would start an empty store and delete the table files)", describe(files, in.replay))
	}
	m, err := readManifest(dir, slogAdapter{l: lg})
	if err != nil {
		return nil, err
	}
	in.manifest = m
	if m.tornBytes > 0 {
		lg.Warn("kv: the MANIFEST ends in an incomplete change (a crash while Badger recorded a flush or compaction); Badger drops it", "dir", dir, "bytes", m.tornBytes)
	}
	var missing []string
	for id := range m.tables {
		if _, ok := files.tables[id]; !ok {
			missing = append(missing, table.IDToFilename(id))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, damaged(dir, missing[0], "the MANIFEST lists %d table file(s) that are missing: %s", len(missing), strings.Join(firstN(missing, 5), ", "))
	}
	needKeys := false
	for _, tm := range m.tables {
		if tm.KeyID != 0 {
			needKeys = true
		}
	}
	if needKeys && !files.registry {
		return nil, damaged(dir, keyRegistry, "the key registry is missing: the tables are encrypted with data keys kept in it")
	}
	for id := range files.tables {
		if _, live := m.tables[id]; !live && !m.mentioned[id] {
			in.orphans = append(in.orphans, table.IDToFilename(id))
		}
	}
	sort.Strings(in.orphans)
	if err := verifyTables(dir, o, m.tables, lg); err != nil {
		return nil, err
	}
	return in, nil
}

func describe(f *dirFiles, replay []string) string {
	var parts []string
	if n := len(f.tables); n > 0 {
		parts = append(parts, fmt.Sprintf("%d table file(s)", n))
	}
	if n := len(replay); n > 0 {
		parts = append(parts, fmt.Sprintf("%d write-ahead log file(s)", n))
	}
	if n := len(f.vlogs); n > 0 {
		parts = append(parts, fmt.Sprintf("%d value-log file(s)", n))
	}
	if f.registry {
		parts = append(parts, keyRegistry)
	}
	if len(parts) == 0 {
		return "other Badger files"
	}
	return strings.Join(parts, ", ")
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "…")
	}
	return s
}

// verifyTables opens every listed table and checks all its blocks, in a few
// goroutines of its own that turn a panic inside Badger's table code into
// an error naming the file.
func verifyTables(dir string, o Options, tables map[uint64]badger.TableManifest, lg *slog.Logger) error {
	if len(tables) == 0 {
		return nil
	}
	reg, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{Dir: dir, ReadOnly: true, EncryptionKey: o.EncryptionKey})
	if err != nil {
		if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
			return fmt.Errorf("kv: %s: wrong encryption key (the key registry does not open with it): %w", dir, err)
		}
		return damaged(dir, keyRegistry, "the key registry is unreadable: %v", err)
	}
	defer reg.Close()
	var icache *ristretto.Cache[uint64, *fb.TableIndex]
	if len(o.EncryptionKey) > 0 {
		// Badger's table code keeps decrypted indexes only in this cache.
		icache, err = ristretto.NewCache(&ristretto.Config[uint64, *fb.TableIndex]{NumCounters: 1 << 12, MaxCost: 64 << 20, BufferItems: 64})
		if err != nil {
			return fmt.Errorf("kv: %w", err)
		}
		defer icache.Close()
	}
	ids := make([]uint64, 0, len(tables))
	for id := range tables {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var (
		mu    sync.Mutex
		first *DamageError
		wg    sync.WaitGroup
		next  = make(chan uint64)
	)
	workers := min(len(ids), max(1, runtime.GOMAXPROCS(0)))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				if derr := verifyTable(dir, id, tables[id], reg, icache); derr != nil {
					mu.Lock()
					if first == nil || derr.File < first.File {
						first = derr
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return nil
}

// verifyTable opens one table with full checksum verification.
func verifyTable(dir string, id uint64, tm badger.TableManifest, reg *badger.KeyRegistry, icache *ristretto.Cache[uint64, *fb.TableIndex]) (derr *DamageError) {
	name := table.IDToFilename(id)
	dk, err := reg.DataKey(tm.KeyID)
	if err != nil {
		return damaged(dir, name, "its data key %d is not in the key registry: %v", tm.KeyID, err)
	}
	mf, err := z.OpenMmapFile(filepath.Join(dir, name), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		// Before Open, inspect has found every listed table; in a running
		// store a compaction may just have removed this one.
		return nil
	}
	if err != nil {
		return damaged(dir, name, "cannot open table file: %v", err)
	}
	defer func() {
		if r := recover(); r != nil {
			mf.Fd.Close()
			derr = damaged(dir, name, "torn or damaged table file (%d bytes): %s", len(mf.Data), tablePanic(r))
		}
	}()
	t, err := table.OpenTable(mf, table.Options{
		ReadOnly:    true,
		ChkMode:     options.OnTableRead,
		BlockSize:   4 << 10,
		Compression: tm.Compression,
		DataKey:     dk,
		IndexCache:  icache,
	})
	if err != nil {
		mf.Fd.Close()
		return damaged(dir, name, "damaged table file: %v", err)
	}
	t.Close(-1)
	return nil
}

// tablePanic describes a panic of Badger's table reader.
func tablePanic(r any) string {
	s := fmt.Sprint(r)
	if strings.Contains(s, "Recovering from initIndex crash") {
		return "its index does not decode (Badger's reader panicked: " + firstLine(s) + ")"
	}
	return "Badger's reader panicked: " + firstLine(s)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "==") {
			return l
		}
	}
	return s
}

// quarantine moves table files the MANIFEST never mentioned out of Badger's
// reach (Badger deletes them at open).
func quarantine(dir string, names []string, lg *slog.Logger) error {
	if len(names) == 0 {
		return nil
	}
	qdir := filepath.Join(dir, orphanDir)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	for _, n := range names {
		dst := filepath.Join(qdir, n)
		if _, err := os.Stat(dst); err == nil {
			dst = filepath.Join(qdir, fmt.Sprintf("%s.%d", n, os.Getpid()))
		}
		if err := os.Rename(filepath.Join(dir, n), dst); err != nil {
			return fmt.Errorf("kv: move %s aside: %w", n, err)
		}
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	lg.Warn("kv: moved table files that the MANIFEST never listed out of the store (a flush or compaction cut short by a crash leaves such files; many of them can mean a damaged MANIFEST)",
		"dir", dir, "to", qdir, "files", strings.Join(firstN(names, 10), ","), "count", len(names))
	return nil
}

// Check inspects the store in o.Dir without opening it and without changing
// anything: the MANIFEST against the table files, every table's blocks, the
// key registry of an encrypted store, the watermark file, and the free
// space Open will need. It returns nil, a *DamageError (ErrDamaged), a
// *NoSpaceError (ErrNoSpace) or another error. Damage that shows only when
// Badger replays its write-ahead log (ErrRolledBack) is found by Open;
// once an Open has found it, Check reports it too. The
// store must not be open in another process (the result would be
// meaningless): Check returns ErrInUse when it is.
func Check(o Options) error {
	if o.InMemory {
		return nil
	}
	if o.Dir == "" {
		return errors.New("kv: Options.Dir is required")
	}
	o = o.withDefaults()
	if _, err := os.Stat(o.Dir); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	if lock, err := os.OpenFile(filepath.Join(o.Dir, lockName), os.O_RDWR, 0); err == nil {
		defer lock.Close() // releases the lock
		if err := lockFile(lock); err != nil {
			return fmt.Errorf("%w: %s (%v)", ErrInUse, o.Dir, err)
		}
	}
	in, err := inspect(o.Dir, o, o.Logger)
	if err != nil {
		return err
	}
	if _, _, err := readWatermark(o.Dir); err != nil {
		return err
	}
	if noted := readRollbackNote(o.Dir); noted != nil {
		return noted
	}
	return checkOpenSpace(o, in)
}

// checkOpenSpace refuses to open when free space is below the headroom plus
// what replaying the write-ahead log will flush.
func checkOpenSpace(o Options, in *inspection) error {
	free, ok, err := freeBytes(o.Dir)
	if err != nil || !ok {
		return nil
	}
	need := o.MinFreeBytes
	for _, name := range in.replay {
		need += uint64(allocated(filepath.Join(o.Dir, name)))
	}
	if free < need {
		return &NoSpaceError{Path: o.Dir, Op: "open", Free: free, Need: need}
	}
	return nil
}
