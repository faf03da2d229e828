//! Parquet data files: writing them (ZSTD, Parquet modular encryption,
//! statistics and page index, a keyed id bloom filter), reading them whole,
//! and point lookups by id that read one page per column.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use futures::FutureExt;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use lru::LruCache;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::KeyValue;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, SortingColumn};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::arrow_codec::{DELETED, ID, SEQ};
use crate::cache::{lru, pop_where};
use crate::crypto::VaultKeys;
use crate::error::StorageError;
use crate::layout::VAULTS;
use crate::manifest::DataFile;
use crate::private::{DIR_MODE, FILE_MODE, set_mode};

/// Footer metadata key of the keyed id bloom filter. The footer is
/// encrypted, so the filter is readable only with the vault key.
const BLOOM_KEY: &str = "coffer.id_bloom";
/// Rows per data page: small pages let a point lookup decode little.
pub const PAGE_ROWS: usize = 4096;
/// ZSTD level of data pages.
const ZSTD_LEVEL: i32 = 12;
/// Rows per row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The object store with the durability Coffer needs: a put returns only
/// once the object is durable.
#[derive(Clone, Debug)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// Root directory when the store is the local filesystem (files and
    /// directories are fsynced there after a put).
    local_root: Option<PathBuf>,
}

impl Objects {
    /// Wraps a store; `local_root` is the directory of a `LocalFileSystem` store.
    pub fn new(store: Arc<dyn ObjectStore>, local_root: Option<PathBuf>) -> Self {
        Self { store, local_root }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes an object and makes it durable before returning.
    pub async fn put_durable(&self, path: &Path, bytes: Bytes) -> Result<(), StorageError> {
        self.store.put(path, PutPayload::from(bytes)).await?;
        if let Some(root) = &self.local_root {
            let mut file = root.clone();
            for part in path.parts() {
                file.push(part.as_ref());
            }
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                // The store creates files and directories with the umask's
                // modes; the data directory is private (decision 0016).
                set_mode(&file, FILE_MODE)?;
                std::fs::File::open(&file)?.sync_all()?;
                // Make the new directory entries durable too.
                let mut dir = file.parent();
                while let Some(d) = dir {
                    set_mode(d, DIR_MODE)?;
                    std::fs::File::open(d)?.sync_all()?;
                    if d.file_name().is_some_and(|n| n == VAULTS) {
                        break;
                    }
                    dir = d.parent();
                }
                Ok(())
            })
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e)))??;
        }
        Ok(())
    }

    /// Deletes every object under `prefix`.
    pub async fn delete_prefix(&self, prefix: &Path) -> Result<usize, StorageError> {
        let locations: Vec<Path> = self
            .store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        let n = locations.len();
        for loc in locations {
            match self.store.delete(&loc).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The local store leaves the (now empty) directories behind, and
        // any staging file of a put that never finished: remove the tree.
        if let Some(root) = &self.local_root {
            let mut dir = root.clone();
            for part in prefix.parts() {
                dir.push(part.as_ref());
            }
            if dir != *root {
                match tokio::fs::remove_dir_all(&dir).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(n)
    }

    /// Sum of object sizes under `prefix`.
    pub async fn bytes_under(&self, prefix: &Path) -> Result<u64, StorageError> {
        let metas: Vec<_> = self.store.list(Some(prefix)).try_collect().await?;
        Ok(metas.iter().map(|m| m.size).sum())
    }
}

/// Encodes row versions (one per id, sorted by id) as an encrypted Parquet
/// file and writes it durably. Returns the file's manifest entry.
pub async fn write_file(
    objects: &Objects,
    keys: &VaultKeys,
    table_name: &str,
    batch: &RecordBatch,
    key: Path,
    base: bool,
) -> Result<DataFile, StorageError> {
    let rows = batch.num_rows();
    let ids = batch.column(ID).as_string::<i32>();
    let seqs = batch
        .column(SEQ)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let deleted = batch.column(DELETED).as_boolean();
    // Delta files carry a keyed bloom filter so lookups skip them cheaply;
    // the base is consulted last and its page index pins the one page to
    // read, so it goes without (a filter would cost ~2 bytes per row).
    let bloom = if base {
        None
    } else {
        let mut bloom = Sbbf::new_with_ndv_fpp(rows.max(1) as u64, 0.01)?;
        for id in ids.iter().flatten() {
            bloom.insert(&keys.row_hash(table_name, id)[..]);
        }
        let mut bytes = Vec::new();
        bloom.write(&mut bytes)?;
        Some(KeyValue::new(
            BLOOM_KEY.to_owned(),
            base64::engine::general_purpose::STANDARD.encode(&bytes),
        ))
    };
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: ID as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(bloom.map(|kv| vec![kv]))
        .with_file_encryption_properties(keys.parquet_encryption()?);
    // Encodings by column shape: ids are sorted strings sharing prefixes;
    // sequence numbers and timestamps grow slowly. Dictionaries suit the rest.
    for field in batch.schema().fields() {
        let path = ColumnPath::from(field.name().as_str());
        let encoding = match field.data_type() {
            DataType::Int64 | DataType::Timestamp(_, _) | DataType::Date32 => Some(Encoding::DELTA_BINARY_PACKED),
            DataType::Utf8 if field.name() == "id" => Some(Encoding::DELTA_BYTE_ARRAY),
            _ => None,
        };
        if let Some(encoding) = encoding {
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, encoding);
        }
    }
    let props = props.build();
    let mut buf = Vec::with_capacity(rows * 16 + 4096);
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    let size = buf.len() as u64;
    objects.put_durable(&key, Bytes::from(buf)).await?;
    Ok(DataFile {
        key: key.to_string(),
        size,
        rows: rows as u64,
        tombstones: deleted.true_count() as u64,
        min_seq: seqs.values().iter().copied().min().unwrap_or(0),
        max_seq: seqs.values().iter().copied().max().unwrap_or(0),
        min_id: if rows > 0 {
            ids.value(0).to_owned()
        } else {
            String::new()
        },
        max_id: if rows > 0 {
            ids.value(rows - 1).to_owned()
        } else {
            String::new()
        },
        base,
    })
}

/// Counters of point lookups in data files, for metrics and tests.
#[derive(Debug, Default)]
pub struct LookupStats {
    /// Files skipped because their bloom filter ruled the id out.
    pub bloom_skips: AtomicU64,
    /// Page selections decoded.
    pub pages_read: AtomicU64,
    /// Rows decoded by those selections.
    pub rows_decoded: AtomicU64,
}

/// Decoded pages of data files, kept for point lookups, least recently
/// used evicted once their memory exceeds the budget.
pub struct PageCache {
    inner: Mutex<PageCacheInner>,
    budget: usize,
}

struct PageCacheInner {
    pages: LruCache<(String, usize, usize), Arc<RecordBatch>>,
    bytes: usize,
}

impl PageCache {
    /// A cache holding at most `budget` bytes of decoded pages (0 disables it).
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::new(PageCacheInner {
                pages: LruCache::unbounded(),
                bytes: 0,
            }),
            budget,
        }
    }

    fn get(&self, key: &(String, usize, usize)) -> Option<Arc<RecordBatch>> {
        self.inner.lock().expect("page cache").pages.get(key).cloned()
    }

    fn put(&self, key: (String, usize, usize), page: Arc<RecordBatch>) {
        let size = page.get_array_memory_size();
        if size > self.budget {
            return;
        }
        let mut inner = self.inner.lock().expect("page cache");
        if let Some(old) = inner.pages.put(key, page) {
            inner.bytes -= old.get_array_memory_size();
        }
        inner.bytes += size;
        while inner.bytes > self.budget {
            match inner.pages.pop_lru() {
                Some((_, old)) => inner.bytes -= old.get_array_memory_size(),
                None => break,
            }
        }
    }

    /// Forgets every page of files under `prefix` (a deleted vault).
    pub fn forget_prefix(&self, prefix: &str) {
        let mut inner = self.inner.lock().expect("page cache");
        for old in pop_where(&mut inner.pages, |k| k.0.starts_with(prefix)) {
            inner.bytes -= old.get_array_memory_size();
        }
    }

    /// Bytes of decoded pages held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("page cache").bytes
    }
}

/// What a reader keeps of an opened file: its decrypted metadata with the
/// page index, and its id bloom filter.
pub struct OpenFile {
    meta: ArrowReaderMetadata,
    bloom: Option<Sbbf>,
    size: u64,
}

impl OpenFile {
    /// Compressed bytes per column over all row groups, in schema order.
    pub fn column_bytes(&self) -> Vec<(String, u64)> {
        let meta = self.meta.metadata();
        let schema = meta.file_metadata().schema_descr();
        (0..schema.num_columns())
            .map(|c| {
                let bytes = meta
                    .row_groups()
                    .iter()
                    .map(|rg| rg.column(c).compressed_size() as u64)
                    .sum();
                (schema.column(c).path().string(), bytes)
            })
            .collect()
    }
}

/// Opened files, by object key, least recently used evicted.
pub struct FileCache {
    files: Mutex<LruCache<String, Arc<OpenFile>>>,
}

impl FileCache {
    /// A cache holding at most `capacity` opened files.
    pub fn new(capacity: usize) -> Self {
        Self { files: lru(capacity) }
    }

    /// Forgets every file under `prefix` (a deleted vault).
    pub fn forget_prefix(&self, prefix: &str) {
        pop_where(&mut self.files.lock().expect("file cache lock"), |k| {
            k.starts_with(prefix)
        });
    }

    /// Opens `file` (or returns the cached opening).
    pub async fn open(
        &self,
        objects: &Objects,
        keys: &VaultKeys,
        file: &DataFile,
    ) -> Result<Arc<OpenFile>, StorageError> {
        if let Some(f) = self.files.lock().expect("file cache lock").get(&file.key) {
            return Ok(f.clone());
        }
        let mut reader = reader(objects, &file.key, file.size);
        let options = ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required)
            .with_file_decryption_properties(keys.parquet_decryption()?);
        let meta = ArrowReaderMetadata::load_async(&mut reader, options).await?;
        let bloom = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == BLOOM_KEY))
            .and_then(|kv| kv.value.as_deref())
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .and_then(|bytes| Sbbf::from_bytes(&bytes).ok());
        let open = Arc::new(OpenFile {
            meta,
            bloom,
            size: file.size,
        });
        self.files
            .lock()
            .expect("file cache lock")
            .put(file.key.clone(), open.clone());
        Ok(open)
    }
}

/// Reads byte ranges of one object for the Parquet reader.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn reader(objects: &Objects, key: &str, size: u64) -> StoreReader {
    StoreReader {
        store: objects.store().clone(),
        path: Path::from(key),
        size,
    }
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let mut metadata = ParquetMetaDataReader::new();
            if let Some(options) = options {
                metadata = metadata
                    .with_metadata_options(Some(options.metadata_options().clone()))
                    .with_column_index_policy(options.column_index_policy())
                    .with_offset_index_policy(options.offset_index_policy())
                    .with_decryption_properties(options.file_decryption_properties().cloned());
            }
            let size = self.size;
            Ok(Arc::new(metadata.load_and_finish(self, size).await?))
        }
        .boxed()
    }
}

/// Reads a whole file as one batch.
pub async fn read_file(objects: &Objects, open: &OpenFile, key: &str) -> Result<RecordBatch, StorageError> {
    let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader(objects, key, open.size), open.meta.clone())
        .build()?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    Ok(concat_batches(open.meta.schema(), &batches)?)
}

/// Looks up row `id` in a file: the bloom filter first, then row-group
/// statistics and the page index of `id` select one page, and only that
/// page's rows are decoded. Returns the row as a one-row batch.
pub async fn lookup(
    stats: &LookupStats,
    pages: &PageCache,
    objects: &Objects,
    open: &OpenFile,
    key: &str,
    row_hash: &[u8; 16],
    id: &str,
) -> Result<Option<RecordBatch>, StorageError> {
    if let Some(bloom) = &open.bloom
        && !bloom.check(&row_hash[..])
    {
        stats.bloom_skips.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    }
    let meta = open.meta.metadata();
    let offsets = meta.offset_index();
    let columns = meta.column_index();
    for (rg_idx, rg) in meta.row_groups().iter().enumerate() {
        if let Some(id_stats) = rg.column(ID).statistics()
            && let (Some(min), Some(max)) = (id_stats.min_bytes_opt(), id_stats.max_bytes_opt())
            && (id.as_bytes() < min || id.as_bytes() > max)
        {
            continue;
        }
        let rg_rows = rg.num_rows() as usize;
        // Narrow to one page with the page index when it is present.
        let (first, count) = match (offsets, columns) {
            (Some(offsets), Some(columns)) => {
                let pages = offsets[rg_idx][ID].page_locations();
                let page = match &columns[rg_idx][ID] {
                    ColumnIndexMetaData::BYTE_ARRAY(index) => (0..pages.len()).find(|&p| {
                        index.min_value(p).is_some_and(|m| m <= id.as_bytes())
                            && index.max_value(p).is_some_and(|m| m >= id.as_bytes())
                    }),
                    _ => Some(0).filter(|_| pages.len() == 1),
                };
                match page {
                    None if pages.len() > 1 && matches!(columns[rg_idx][ID], ColumnIndexMetaData::BYTE_ARRAY(_)) => {
                        continue;
                    }
                    None => (0, rg_rows),
                    Some(p) => {
                        let first = pages[p].first_row_index as usize;
                        let end = pages.get(p + 1).map_or(rg_rows, |next| next.first_row_index as usize);
                        (first, end - first)
                    }
                }
            }
            _ => (0, rg_rows),
        };
        let page_key = (key.to_owned(), rg_idx, first);
        let page = match pages.get(&page_key) {
            Some(page) => page,
            None => {
                let selection = RowSelection::from(vec![
                    RowSelector::skip(first),
                    RowSelector::select(count),
                    RowSelector::skip(rg_rows - first - count),
                ]);
                let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
                    reader(objects, key, open.size),
                    open.meta.clone(),
                )
                .with_row_groups(vec![rg_idx])
                .with_row_selection(selection)
                .with_batch_size(count.max(1))
                .build()?;
                let batches: Vec<RecordBatch> = stream.try_collect().await?;
                let page = Arc::new(concat_batches(open.meta.schema(), &batches)?);
                stats.pages_read.fetch_add(1, Ordering::Relaxed);
                stats.rows_decoded.fetch_add(page.num_rows() as u64, Ordering::Relaxed);
                pages.put(page_key, page.clone());
                page
            }
        };
        {
            let batch = page.as_ref();
            let ids = batch.column(ID).as_string::<i32>();
            // Pages are sorted by id: binary search.
            let (mut lo, mut hi) = (0usize, ids.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                if ids.value(mid) < id {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if lo < ids.len() && !ids.is_null(lo) && ids.value(lo) == id {
                return Ok(Some(batch.slice(lo, 1)));
            }
        }
    }
    Ok(None)
}

/// Merges batches given newest first (each with at most one version per id)
/// into one batch holding the newest version of each id, sorted by id.
/// With `drop_tombstones`, deleted rows are left out (only when no older file
/// remains that the tombstones would have to hide).
pub fn merge_newest(
    schema: &SchemaRef,
    newest_first: &[RecordBatch],
    drop_tombstones: bool,
) -> Result<RecordBatch, StorageError> {
    let all = concat_batches(schema, newest_first)?;
    let ids = all.column(ID).as_string::<i32>();
    let deleted = all.column(DELETED).as_boolean();
    let mut seen = std::collections::HashSet::with_capacity(all.num_rows());
    let mut keep: Vec<u32> = Vec::with_capacity(all.num_rows());
    for i in 0..all.num_rows() {
        if seen.insert(ids.value(i)) && !(drop_tombstones && deleted.value(i)) {
            keep.push(i as u32);
        }
    }
    keep.sort_by(|&a, &b| ids.value(a as usize).cmp(ids.value(b as usize)));
    let indices = datafusion::arrow::array::UInt32Array::from(keep);
    Ok(take_record_batch(&all, &indices)?)
}

/// Reads just the `id` column of a file.
pub async fn read_ids(objects: &Objects, open: &OpenFile, key: &str) -> Result<Vec<String>, StorageError> {
    let mask = parquet::arrow::ProjectionMask::roots(open.meta.metadata().file_metadata().schema_descr(), [ID]);
    let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader(objects, key, open.size), open.meta.clone())
        .with_projection(mask)
        .build()?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    let mut ids = Vec::new();
    for b in &batches {
        ids.extend(b.column(0).as_string::<i32>().iter().flatten().map(str::to_owned));
    }
    Ok(ids)
}
