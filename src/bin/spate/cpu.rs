//! CPU time from `/proc` (Linux): the whole process, and the threads with a given name. Elsewhere
//! both read 0 and the benchmark shows wall-clock figures only.

/// `/proc` counts in USER_HZ ticks, 100 per second on every Linux architecture.
const TICKS: f64 = 100.0;

/// utime + stime of a `/proc/.../stat` line, in seconds.
fn stat_seconds(stat: &str) -> Option<f64> {
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// CPU seconds (user + system) this process has used.
pub fn process_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_seconds(&s))
        .unwrap_or(0.0)
}

/// CPU seconds used by this process's threads whose name starts with `prefix`.
pub fn thread_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| stat_seconds(&s))
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_lines_parse_past_a_name_with_spaces() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(super::stat_seconds(line), Some(3.0));
    }
}
