// Opening an IndexedDB database, shared by the room records (store.js) and the
// local message cache (cache.js), which keep separate databases.

const OPEN_TIMEOUT_MS = 3000; // some browsers never answer open() in private mode

const opened = new Map(); // database name -> Promise<IDBDatabase>

/**
 * The database `name` (version 1) with one object store `store` keyed by
 * `keyPath`, opened once per page. Rejects when the browser refuses or blocks
 * IndexedDB, or does not answer in time; callers then keep what they must in memory.
 */
export function openDatabase(name, store, keyPath) {
  if (!opened.has(name)) {
    const promise = new Promise((resolve, reject) => {
      if (!globalThis.indexedDB) {
        reject(new Error("IndexedDB is not available"));
        return;
      }
      const timer = setTimeout(() => reject(new Error("IndexedDB did not answer")), OPEN_TIMEOUT_MS);
      let req;
      try {
        req = indexedDB.open(name, 1);
      } catch (error) {
        clearTimeout(timer);
        reject(error);
        return;
      }
      req.onupgradeneeded = () => {
        if (!req.result.objectStoreNames.contains(store)) req.result.createObjectStore(store, { keyPath });
      };
      req.onsuccess = () => {
        clearTimeout(timer);
        resolve(req.result);
      };
      req.onerror = () => {
        clearTimeout(timer);
        reject(req.error || new Error("IndexedDB refused"));
      };
      req.onblocked = () => {
        clearTimeout(timer);
        reject(new Error("IndexedDB is blocked by another tab"));
      };
    });
    promise.catch(() => {}); // callers see the rejection; avoid an unhandled one
    opened.set(name, promise);
  }
  return opened.get(name);
}
