use super::*;
use crate::config::access::StoreConfig;
use crate::store::UsageRecord;

fn temp_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "nines-spool-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

fn records(from: usize, n: usize) -> Vec<UsageRecord> {
    (from..from + n).map(crate::store::tests::awkward).collect()
}

async fn ids_in(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .recent_usage(None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id.to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn spooled_batches_survive_a_reopen_and_are_written_once() {
    let dir = temp_dir("reopen");
    let store = Store::open(&StoreConfig::sqlite_in(&dir)).await.unwrap();
    {
        let spool = Spool::open(&dir.join("spool"), 1 << 30).unwrap();
        spool.append("usage", &records(0, 3)).unwrap();
        spool.append("usage", &records(3, 2)).unwrap();
        assert_eq!(spool.stats.pending_batches.load(Ordering::Relaxed), 2);
    }
    // A new process: the spool counts what it holds and replays it in order.
    let spool = Spool::open(&dir.join("spool"), 1 << 30).unwrap();
    assert_eq!(spool.stats.pending_batches.load(Ordering::Relaxed), 2);
    assert_eq!(replay_once(&spool, &store).await.unwrap(), 5);
    assert!(spool.is_empty());
    assert_eq!(spool.stats.bytes.load(Ordering::Relaxed), 0);
    assert_eq!(ids_in(&store).await.len(), 5);
    // Nothing left to replay: a second replay writes nothing.
    assert_eq!(replay_once(&spool, &store).await.unwrap(), 0);
    assert_eq!(ids_in(&store).await.len(), 5);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_replay_cut_short_resumes_after_the_last_line_applied() {
    let dir = temp_dir("resume");
    let store = Store::open(&StoreConfig::sqlite_in(&dir)).await.unwrap();
    let spool = Spool::open(&dir.join("spool"), 1 << 30).unwrap();
    spool.append("usage", &records(0, 2)).unwrap();
    spool.append("usage", &records(2, 2)).unwrap();
    spool.append("usage", &records(4, 2)).unwrap();
    // An earlier replay applied the first line (in its transaction) and then the process died
    // before deleting the segment.
    let segment = spool.segments().unwrap().remove(0);
    let text = std::fs::read(spool.dir.join(&segment)).unwrap();
    let first = text.split(|b| *b == b'\n').next().unwrap();
    assert_eq!(
        store.apply_spooled(&segment, 0, first).await.unwrap(),
        Applied::Written(2)
    );
    assert_eq!(
        store.apply_spooled(&segment, 0, first).await.unwrap(),
        Applied::AlreadyThere,
        "a line is applied once"
    );
    assert_eq!(replay_once(&spool, &store).await.unwrap(), 4);
    let ids = ids_in(&store).await;
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids.len(), 6);
    assert_eq!(unique, ids, "no record written twice");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_bound_drops_the_newest_and_counts_them() {
    let dir = temp_dir("bound");
    let spool = Spool::open(&dir, 1024).unwrap();
    let batch = records(0, 2);
    let mut kept = 0;
    let mut refused = 0;
    for _ in 0..10 {
        match spool.append("usage", &batch) {
            Ok(()) => kept += 1,
            Err(SpoolError::Full(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(kept >= 1 && refused >= 1, "kept {kept}, refused {refused}");
    assert!(spool.stats.bytes.load(Ordering::Relaxed) <= 1024);
    assert_eq!(spool.stats.dropped.load(Ordering::Relaxed), refused * 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_line_cut_short_by_a_crash_is_skipped_and_counted() {
    let dir = temp_dir("torn");
    let store = Store::open(&StoreConfig::sqlite_in(&dir)).await.unwrap();
    let spool_dir = dir.join("spool");
    {
        let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
        spool.append("usage", &records(0, 2)).unwrap();
        let segment = spool.segments().unwrap().remove(0);
        let mut f = OpenOptions::new()
            .append(true)
            .open(spool_dir.join(segment))
            .unwrap();
        f.write_all(br#"{"kind":"usage","records":[{"id":"#)
            .unwrap();
    }
    let spool = Spool::open(&spool_dir, 1 << 30).unwrap();
    assert_eq!(replay_once(&spool, &store).await.unwrap(), 2);
    assert_eq!(spool.stats.dropped.load(Ordering::Relaxed), 1);
    assert!(spool.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}
