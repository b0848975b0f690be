package milter

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// removeStaleSpools deletes the private spool directories (fpsafe-spool-PID-*) of fpsafe
// processes that are gone, e.g. killed without a chance to clean up: their bodies belong to
// messages the MTA has since delivered without fpsafe or will offer again.
func removeStaleSpools(tmp string, log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, "fpsafe-spool-*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), "fpsafe-spool-")
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		if err := os.RemoveAll(d); err == nil {
			log.Info("removed the spool directory of a process that is gone", "dir", d, "pid", pid)
		}
	}
}

// removeSpoolFiles deletes body spool files left in a configured spool directory.
func removeSpoolFiles(dir string, log *slog.Logger) {
	files, _ := filepath.Glob(filepath.Join(dir, "fpsafe-body-*"))
	for _, f := range files {
		os.Remove(f)
	}
	if len(files) > 0 {
		log.Info("removed spool files left by an earlier run", "dir", dir, "files", len(files))
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
