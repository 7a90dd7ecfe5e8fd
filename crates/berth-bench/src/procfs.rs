//! The server's memory and CPU from `/proc/<pid>`, and this client's CPU.

use std::path::PathBuf;

use anyhow::Context;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 per second on
/// every Linux architecture's user ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads the figures of a server process.
#[derive(Debug, Clone)]
pub struct ServerProbe {
    pid: u32,
}

impl ServerProbe {
    /// Checks that the process exists and its status is readable.
    pub fn new(pid: u32) -> anyhow::Result<Self> {
        let probe = ServerProbe { pid };
        probe
            .status_kib("VmRSS")
            .with_context(|| format!("cannot read the memory of server pid {pid}"))?;
        Ok(probe)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }

    /// A `Vm*` line of `/proc/<pid>/status`, in KiB.
    pub fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let path = self.path("status");
        let status = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        parse_status_kib(&status, field)
            .with_context(|| format!("no {field} in {}", path.display()))
    }

    /// Resident memory now.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS")
    }

    /// Peak resident memory since start or since the last [`reset_peak`].
    ///
    /// [`reset_peak`]: ServerProbe::reset_peak
    pub fn peak_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM")
    }

    /// Resets the peak to the current RSS (`5` into `clear_refs`, Linux ≥
    /// 4.0; needs the right to write the server's `/proc` files).
    pub fn reset_peak(&self) -> anyhow::Result<()> {
        let path = self.path("clear_refs");
        std::fs::write(&path, "5").with_context(|| format!("cannot write {}", path.display()))
    }

    /// User + system CPU seconds of all the server's threads.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let path = self.path("stat");
        let stat = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        parse_stat_cpu(&stat).with_context(|| format!("unexpected format of {}", path.display()))
    }
}

/// User + system CPU seconds of this process.
pub fn self_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("cannot read /proc/self/stat")?;
    parse_stat_cpu(&stat).context("unexpected format of /proc/self/stat")
}

/// The machine's 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// utime + stime (fields 14 and 15) in seconds; fields are counted after
/// the command name, which is in parentheses and may contain spaces.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tberth\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        let stat = "42 (tokio (rt) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        assert!(self_cpu_seconds().is_ok());
        assert!(load_average().is_some_and(|l| l >= 0.0));
        let me = ServerProbe::new(std::process::id()).expect("own pid");
        assert!(me.rss_kib().expect("rss") > 0);
        assert!(me.peak_kib().expect("peak") >= me.rss_kib().expect("rss") / 2);
    }
}
