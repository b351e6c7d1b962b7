//! `mpgw upload FILE s3://BUCKET/KEY`: a resumable, parallel multipart upload.
//!
//! 1. The journal (see `journal`) names the upload of this file to this place, if one was
//!    started; ListParts says which parts the server has. A part counts only if its ETag is
//!    the MD5 of the same range of the local file; any other is sent again.
//! 2. No journal, a changed file, or an upload the server no longer knows (`NoSuchUpload`):
//!    a new upload.
//! 3. Missing parts go out `--jobs` at a time, each with `Content-MD5` and bounded retries.
//! 4. Complete, then check the object's ETag is the multipart ETag the part MD5s predict.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt as _, TryStreamExt as _, stream};

use super::http::FileRange;
use super::journal::{self, FileIdentity, UploadJournal};
use super::progress::Progress;
use super::s3::{ListedPart, S3Client};
use super::settings::S3Settings;
use super::{Error, Plan, Result, retry};
use crate::client::args::UploadArgs;
use crate::model::checksum::multipart_etag;

/// S3's smallest part (but the last).
const MIN_PART: u64 = 5 << 20;

/// Uploads; returns the object's ETag.
pub async fn upload(args: &UploadArgs, progress: &Progress) -> Result<String> {
    let target = args
        .target
        .as_deref()
        .ok_or_else(|| Error::Usage("upload needs a target: s3://BUCKET/KEY".into()))?;
    let (bucket, mut key) = super::parse_s3_url(target)?;
    if key.is_empty() || key.ends_with('/') {
        // Like `aws s3 cp`: a "folder" target takes the file's name.
        let name = args
            .file
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{}: no file name", args.file.display())))?;
        key.push_str(&name.to_string_lossy());
    }
    let t = &args.transfer;
    if t.part_size < MIN_PART {
        return Err(Error::Usage(
            "--part-size must be at least 5MiB (S3's smallest part)".into(),
        ));
    }
    let s3 = S3Client::new(S3Settings::resolve(t)?, usize::from(t.jobs))?;
    let path = std::path::absolute(&args.file).map_err(Error::local(&args.file))?;
    let file = FileIdentity::of(&path).await?;
    let journal_path =
        journal::upload_path(&["s3", s3.endpoint(), &bucket, &key, &path.to_string_lossy()])?;
    let ctx = Ctx {
        s3: &s3,
        bucket: &bucket,
        key: &key,
        path: &path,
        progress,
        attempts: t.retries.max(1),
        jobs: usize::from(t.jobs),
    };

    // Resume the journaled upload if the file is unchanged and the server still has it.
    let mut resumed = None;
    if let Some(j) = journal::load::<UploadJournal>(&journal_path) {
        // A part size Plan would not keep means a hand-edited journal: not ours to trust.
        if j.file != file || Plan::new(file.size, j.part_size).part_size != j.part_size {
            progress.note("the file changed since the interrupted upload: starting over");
            // Best effort: free the old parts on the server.
            let _ = s3.abort_multipart_upload(&bucket, &key, &j.upload_id).await;
        } else {
            match retry(ctx.attempts, "ListParts", progress, async || {
                s3.list_parts(&bucket, &key, &j.upload_id).await
            })
            .await
            {
                Ok(parts) => resumed = Some((j, parts)),
                Err(e) if e.code() == Some("NoSuchUpload") => {
                    // Perhaps a previous run completed it and was stopped before it could say so.
                    if let Some(etag) = ctx.already_there(file.size, j.part_size).await? {
                        journal::remove(&journal_path)?;
                        progress.start("uploading", file.size);
                        progress.skip(file.size);
                        progress.summary("already uploaded", &target_name(&bucket, &key));
                        return Ok(etag);
                    }
                    progress.note("the interrupted upload is gone from the server: starting over");
                }
                Err(e) => return Err(e),
            }
        }
    }
    let (journal, listed) = match resumed {
        Some(r) => r,
        None => {
            let plan = Plan::new(file.size, t.part_size);
            let upload_id = retry(
                ctx.attempts,
                "CreateMultipartUpload",
                progress,
                async || s3.create_multipart_upload(&bucket, &key).await,
            )
            .await?;
            let j = UploadJournal {
                endpoint: s3.endpoint().to_owned(),
                bucket: bucket.clone(),
                key: key.clone(),
                upload_id,
                part_size: plan.part_size,
                file,
            };
            journal::save(&journal_path, &j)?;
            (j, Vec::new())
        }
    };
    let plan = Plan::new(journal.file.size, journal.part_size);
    let id = journal.upload_id.as_str();

    // Which parts are there already: the server's ETag must be the MD5 of our range.
    let mut md5s: Vec<Option<[u8; 16]>> = vec![None; plan.count() as usize];
    let listed: HashMap<u32, ListedPart> = listed.into_iter().map(|p| (p.number, p)).collect();
    let candidates: Vec<u32> = (1..=plan.count())
        .filter(|n| listed.get(n).is_some_and(|p| p.size == plan.range(*n).1))
        .collect();
    if !candidates.is_empty() {
        let bytes = candidates.iter().map(|n| plan.range(*n).1).sum();
        progress.start("checking", bytes);
        let checked: Vec<(u32, [u8; 16])> = stream::iter(candidates)
            .map(|n| async move {
                let md5 = ctx.range(&plan, n).md5().await?;
                progress.inc(plan.range(n).1);
                Ok::<_, Error>((n, md5))
            })
            .buffer_unordered(ctx.jobs)
            .try_collect()
            .await?;
        for (n, md5) in checked {
            if listed[&n].etag == hex::encode(md5) {
                md5s[n as usize - 1] = Some(md5);
            }
        }
    }

    progress.start("uploading", plan.size);
    progress.skip(
        md5s.iter()
            .enumerate()
            .filter(|(_, m)| m.is_some())
            .map(|(i, _)| plan.range(i as u32 + 1).1)
            .sum(),
    );
    let missing: Vec<u32> = (1..=plan.count())
        .filter(|n| md5s[*n as usize - 1].is_none())
        .collect();
    let sent: Vec<(u32, [u8; 16])> = stream::iter(missing)
        .map(|n| ctx.send_part(id, &plan, n))
        .buffer_unordered(ctx.jobs)
        .try_collect()
        .await?;
    for (n, md5) in sent {
        md5s[n as usize - 1] = Some(md5);
    }
    let md5s: Vec<[u8; 16]> = md5s
        .into_iter()
        .map(|m| m.expect("every part is there"))
        .collect();

    let expected = multipart_etag(&md5s);
    let parts: Vec<(u32, String)> = md5s
        .iter()
        .zip(1..)
        .map(|(m, n)| (n, hex::encode(m)))
        .collect();
    let completed = retry(
        ctx.attempts,
        "CompleteMultipartUpload",
        progress,
        async || {
            s3.complete_multipart_upload(&bucket, &key, id, &parts)
                .await
        },
    )
    .await;
    let etag = match completed {
        Ok(etag) => etag,
        // An earlier attempt may have completed it and lost the answer.
        Err(e) if e.code() == Some("NoSuchUpload") => match s3.head_object(&bucket, &key).await {
            Ok(o) if o.etag == expected => o.etag,
            _ => return Err(e),
        },
        Err(e) => return Err(e),
    };
    // The upload is gone either way now: a mismatch is reported, not resumed.
    journal::remove(&journal_path)?;
    if etag != expected {
        return Err(Error::Integrity(format!(
            "the object's ETag is {etag}, expected {expected} from the parts sent"
        )));
    }
    progress.summary("uploaded", &target_name(&bucket, &key));
    Ok(etag)
}

fn target_name(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// What every part job needs.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    s3: &'a S3Client,
    bucket: &'a str,
    key: &'a str,
    path: &'a Path,
    progress: &'a Progress,
    attempts: u32,
    jobs: usize,
}

impl Ctx<'_> {
    fn range(&self, plan: &Plan, n: u32) -> FileRange {
        let (offset, len) = plan.range(n);
        FileRange {
            path: self.path.to_owned(),
            offset,
            len,
        }
    }

    /// Sends part `n` until the server has it (or retries run out); returns its MD5.
    async fn send_part(self, id: &str, plan: &Plan, n: u32) -> Result<(u32, [u8; 16])> {
        let range = self.range(plan, n);
        let md5 = range.md5().await?;
        let what = format!("part {n}");
        retry(self.attempts, &what, self.progress, async || {
            let sent = Arc::new(AtomicU64::new(0));
            let on_chunk = self.progress.on_chunk(sent.clone());
            let r = self
                .s3
                .upload_part(
                    self.bucket,
                    self.key,
                    id,
                    n,
                    &range,
                    Some(md5),
                    Some(on_chunk),
                )
                .await;
            let r = r.and_then(|etag| {
                // A 32-hex ETag that is not our MD5: the server kept other bytes. Send again.
                if etag.len() == 32 && etag != hex::encode(md5) {
                    return Err(Error::Transport(format!(
                        "part {n}: the server's ETag {etag} is not the part's MD5"
                    )));
                }
                Ok(())
            });
            if r.is_err() {
                self.progress.dec(sent.load(Ordering::Relaxed));
            }
            r
        })
        .await?;
        Ok((n, md5))
    }

    /// The object's ETag if it already holds exactly this file, uploaded in parts of
    /// `part_size` (reads the file to find out, which is cheaper than sending it).
    async fn already_there(&self, size: u64, part_size: u64) -> Result<Option<String>> {
        let plan = Plan::new(size, part_size);
        let Ok(o) = self.s3.head_object(self.bucket, self.key).await else {
            return Ok(None);
        };
        if o.size != size || !o.etag.ends_with(&format!("-{}", plan.count())) {
            return Ok(None);
        }
        let md5s: Vec<[u8; 16]> = stream::iter(1..=plan.count())
            .map(|n| {
                let range = self.range(&plan, n);
                async move { range.md5().await }
            })
            .buffered(self.jobs)
            .try_collect()
            .await?;
        Ok((multipart_etag(&md5s) == o.etag).then_some(o.etag))
    }
}
