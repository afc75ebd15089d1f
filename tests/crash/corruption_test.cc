// Corruption at rest, file by file: a loaded ledger (every column family in
// SST files, and a crash image with acknowledged events only in its WAL) with
// one byte flipped at a seeded offset of each file in turn. Each damaged copy
// must end one of three ways, never a fourth:
//   refused   the ledger does not open, and says why;
//   found     it opens, and the scrub names the damage, after which every
//             read answers DATA_LOSS;
//   harmless  it opens, the scrub passes, and everything reads as recorded:
//             every event with its payload, every stream, agency and subject
//             index, the cursor; every idempotency key replays its original
//             commit; and the next head is consistent with the last head
//             recorded before the damage (a fork would be caught here).
// Real RocksDB on disk. The seed is printed; CARELOOP_SEED replays one.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "storage/local_ledger.h"
#include "storage/receipt.h"
#include "tests/support/ledger_helpers.h"
#include "tests/support/test_env.h"

namespace careloop::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kAgencies = 3;
constexpr int kSubjects = 7;
constexpr int kStreams = 11;

// Everything a reader can see of the ledger.
struct State {
  std::vector<std::pair<std::string, std::string>> events;  // header bytes, payload; by seq
  std::map<std::string, std::vector<uint64_t>> agencies, subjects, streams;  // seqs
  std::optional<uint64_t> cursor;
  uint64_t size = 0;
  std::string root;

  bool operator==(const State&) const = default;
};

std::string Agency(int i) { return std::string("org.") + static_cast<char>('a' + i); }
std::string Subject(int i) { return absl::StrCat("subject-", i); }
std::string Stream(int i) { return absl::StrCat("referral/r", i); }
constexpr char kCursor[] = "consumer/org.a/main";

// Reads the whole ledger through every read path. A read that fails must
// fail loudly (DATA_LOSS), which the caller checks.
absl::StatusOr<State> ReadState(storage::LocalLedger* l) {
  State s;
  ASSIGN_OR_RETURN(v1::SignedHead head, l->Head());
  s.size = head.tree_size();
  s.root = head.root_hash();
  for (uint64_t from = 1; from <= s.size;) {
    v1::ReadRequest r;
    r.set_from_seq(from);
    r.set_include_payloads(true);
    ASSIGN_OR_RETURN(v1::ReadResponse page, l->Read(r));
    if (page.events_size() == 0) return absl::DataLossError("a read stopped short");
    for (const v1::Event& e : page.events()) s.events.emplace_back(e.header_bytes(), e.payload());
    from += page.events_size();
  }
  auto index = [&](bool agency, const std::string& key) -> absl::Status {
    std::vector<uint64_t>& seqs = agency ? s.agencies[key] : s.subjects[key];
    for (uint64_t after = 0;;) {
      v1::ReadIndexRequest r;
      agency ? r.set_agency(key) : r.set_subject(key);
      r.set_after_seq(after);
      r.set_include_payloads(true);
      ASSIGN_OR_RETURN(v1::ReadResponse page, l->ReadIndex(r));
      if (page.events_size() == 0) return absl::OkStatus();
      for (const v1::Event& e : page.events()) seqs.push_back(e.header().seq());
      after = seqs.back();
    }
  };
  for (int i = 0; i < kAgencies; ++i) RETURN_IF_ERROR(index(true, Agency(i)));
  for (int i = 0; i < kSubjects; ++i) RETURN_IF_ERROR(index(false, Subject(i)));
  for (int i = 0; i < kStreams; ++i) {
    std::vector<uint64_t>& seqs = s.streams[Stream(i)];
    for (uint64_t from = 1;;) {
      v1::ReadStreamRequest r;
      r.set_stream(Stream(i));
      r.set_from_version(from);
      ASSIGN_OR_RETURN(v1::ReadResponse page, l->ReadStream(r));
      if (page.events_size() == 0) break;
      for (const v1::Event& e : page.events()) seqs.push_back(e.header().seq());
      from += page.events_size();
    }
    ASSIGN_OR_RETURN(uint64_t version, l->StreamVersion(Stream(i)));
    if (version != seqs.size()) return absl::DataLossError("a stream's version disagrees");
  }
  ASSIGN_OR_RETURN(s.cursor, l->GetCursor(kCursor));
  return s;
}

struct Outcomes {
  int refused = 0, found = 0, harmless = 0;
};

class CorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signer_ = TestSigner();
    verifier_ = VerifierFor(*signer_);
    const char* env_seed = std::getenv("CARELOOP_SEED");
    seed_ = env_seed != nullptr ? static_cast<uint32_t>(std::strtoul(env_seed, nullptr, 10))
                                : std::random_device{}();
    std::printf("seed %u (CARELOOP_SEED=%u replays it)\n", seed_, seed_);
    rng_.seed(seed_);
  }

  absl::StatusOr<std::unique_ptr<storage::LocalLedger>> Open(const std::string& dir) {
    storage::LedgerOptions o;
    o.dir = dir;
    o.hub_name = "careloop.test";
    o.signer = signer_.get();
    o.verifier = verifier_.get();
    return storage::LocalLedger::Open(o);
  }

  // `appends` appends of 1 to 4 events each, naming agencies and subjects,
  // each with an idempotency key (kept for replays); one in ten moves the
  // cursor.
  void Load(storage::LocalLedger* l, int appends) {
    for (int i = 0; i < appends; ++i, ++loaded_) {
      v1::AppendRequest r;
      const int n = 1 + static_cast<int>(rng_() % 4);
      for (int k = 0; k < n; ++k) {
        v1::EventInput* e = r.add_events();
        e->set_stream(Stream(static_cast<int>(rng_() % kStreams)));
        e->set_type("NoteAdded");
        e->set_payload(std::string(16 + rng_() % 300, static_cast<char>('a' + rng_() % 26)));
        const int first = static_cast<int>(rng_() % kAgencies);
        e->add_agencies(Agency(first));
        if (rng_() % 3 == 0) {
          e->add_agencies(
              Agency((first + 1 + static_cast<int>(rng_() % (kAgencies - 1))) % kAgencies));
        }
        if (rng_() % 2 == 0) e->set_subject(Subject(static_cast<int>(rng_() % kSubjects)));
      }
      r.set_idempotency_key(absl::StrCat("append-", loaded_));
      if (loaded_ % 10 == 0) {
        v1::CursorUpdate* c = r.add_cursor_updates();
        c->set_name(kCursor);
        c->set_position(loaded_);
      }
      absl::StatusOr<v1::Commit> c = l->Append(r);
      ASSERT_TRUE(c.ok()) << c.status();
      keyed_.emplace_back(r, *c);
    }
  }

  // A ledger in `dir` loaded, recorded and closed (so in SST files).
  void LoadAndClose(const std::string& dir, int appends) {
    auto l = Open(dir);
    ASSERT_TRUE(l.ok()) << l.status();
    ASSERT_NO_FATAL_FAILURE(Load(l->get(), appends));
    ASSERT_NO_FATAL_FAILURE(Record(l->get()));
    ASSERT_TRUE((*l)->Close().ok());
  }

  void Record(storage::LocalLedger* l) {
    absl::StatusOr<State> s = ReadState(l);
    ASSERT_TRUE(s.ok()) << s.status();
    recorded_ = *s;
    absl::StatusOr<v1::SignedHead> head = l->Head();
    ASSERT_TRUE(head.ok());
    recorded_head_ = *head;
  }

  // One damaged copy: which of the three ways it ended (see the top).
  void Check(const std::string& dir, const std::string& what, Outcomes* out) {
    SCOPED_TRACE(what);
    auto opened = Open(dir);
    if (!opened.ok()) {
      ++out->refused;
      EXPECT_FALSE(opened.status().message().empty());
      return;
    }
    storage::LocalLedger* l = opened->get();
    absl::StatusOr<storage::VerifyReport> scrub = l->Scrub();
    if (!scrub.ok() || !scrub->ok) {
      ++out->found;
      EXPECT_TRUE(absl::IsDataLoss(l->damage())) << l->damage();
      EXPECT_TRUE(absl::IsDataLoss(l->Read(v1::ReadRequest()).status()));
      EXPECT_TRUE(absl::IsDataLoss(l->Append(Event("after/damage")).status()));
      l->Close().IgnoreError();
      return;
    }
    absl::StatusOr<State> state = ReadState(l);
    if (!state.ok()) {
      // Past the scrub, a read may still meet damage (a block it skipped):
      // loud, never short.
      ++out->found;
      EXPECT_TRUE(absl::IsDataLoss(state.status())) << state.status();
      l->Close().IgnoreError();
      return;
    }
    ++out->harmless;
    EXPECT_TRUE(*state == recorded_) << "reads differ from what was recorded: " << Diff(*state);
    ExpectReplaysAndExtends(l);
    EXPECT_TRUE(l->Close().ok());
  }

  // What differs from the recorded state, for the failure message.
  std::string Diff(const State& s) const {
    const State& r = recorded_;
    std::string out;
    if (s.size != r.size || s.root != r.root) absl::StrAppend(&out, "head; ");
    if (s.events != r.events)
      absl::StrAppend(&out, "events (", s.events.size(), " of ", r.events.size(), "); ");
    if (s.agencies != r.agencies) absl::StrAppend(&out, "agency index; ");
    if (s.subjects != r.subjects) absl::StrAppend(&out, "subject index; ");
    if (s.streams != r.streams) absl::StrAppend(&out, "streams; ");
    if (s.cursor != r.cursor) absl::StrAppend(&out, "cursor; ");
    return out;
  }

  // Every idempotency key replays its original commit; the next head is
  // consistent with the last one recorded.
  void ExpectReplaysAndExtends(storage::LocalLedger* l) {
    for (size_t i = 0; i < keyed_.size(); i += 7) {
      absl::StatusOr<v1::Commit> again = l->Append(keyed_[i].first);
      ASSERT_TRUE(again.ok()) << again.status();
      EXPECT_TRUE(again->deduplicated()) << keyed_[i].first.idempotency_key();
      EXPECT_EQ(again->first_seq(), keyed_[i].second.first_seq());
      EXPECT_EQ(again->last_seq(), keyed_[i].second.last_seq());
    }
    ASSERT_TRUE(l->Append(Event(Stream(0), "NoteAdded", "after the damage")).ok());
    absl::StatusOr<v1::SignedHead> head = l->Head();
    ASSERT_TRUE(head.ok());
    ASSERT_EQ(head->tree_size(), recorded_head_.tree_size() + 1);
    absl::StatusOr<v1::ConsistencyProof> proof =
        l->ProveConsistency(recorded_head_.tree_size(), head->tree_size());
    ASSERT_TRUE(proof.ok()) << proof.status();
    EXPECT_TRUE(storage::VerifyConsistencyProof(recorded_head_, *head, *proof, *verifier_).ok())
        << "the log forked";
  }

  // Copies `from` to a fresh dir with the byte at `at` of `file` flipped.
  std::string FlippedCopy(const std::string& from, const fs::path& file, size_t at) {
    const std::string dir = dir_.Sub(absl::StrCat("copy-", ++copies_));
    fs::copy(from, dir, fs::copy_options::recursive);
    std::fstream f(fs::path(dir) / file.filename(),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.get(c);
    c = static_cast<char>(c ^ (1 + rng_() % 255));
    f.seekp(static_cast<std::streamoff>(at));
    f.put(c);
    return dir;
  }

  // `flips` seeded flips in each file of `dir` that `pick` selects.
  Outcomes FlipEach(const std::string& dir, const std::function<bool(const fs::path&)>& pick,
                    int flips) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file() && fs::file_size(e.path()) > 0 && pick(e.path()))
        files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    Outcomes out;
    for (const fs::path& file : files) {
      const size_t size = fs::file_size(file);
      for (int i = 0; i < flips; ++i) {
        const size_t at = rng_() % size;
        const std::string what = absl::StrCat(file.filename().string(), " at ", at, " of ", size);
        const std::string copy = FlippedCopy(dir, file, at);
        Check(copy, what, &out);
        fs::remove_all(copy);
        if (HasFatalFailure()) return out;
      }
    }
    std::printf("%zu files x %d flips: %d refused, %d found by the scrub, %d harmless\n",
                files.size(), flips, out.refused, out.found, out.harmless);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<trust::Ed25519HeadSigner> signer_;
  std::unique_ptr<trust::Ed25519NoteVerifier> verifier_;
  uint32_t seed_ = 0;
  std::mt19937 rng_;
  int loaded_ = 0;
  int copies_ = 0;
  std::vector<std::pair<v1::AppendRequest, v1::Commit>> keyed_;
  State recorded_;
  v1::SignedHead recorded_head_;
};

// Closed cleanly: every column family is in SST files, beside the MANIFEST,
// CURRENT, OPTIONS, the format file and the high-water mark.
TEST_F(CorruptionTest, AFlippedByteInAnyFileOfAClosedLedgerIsRefusedFoundOrHarmless) {
  const std::string dir = dir_.Sub("ledger");
  ASSERT_NO_FATAL_FAILURE(LoadAndClose(dir, 150));
  int ssts = 0;
  for (const auto& e : fs::directory_iterator(dir)) ssts += e.path().extension() == ".sst";
  ASSERT_GE(ssts, 10) << "every column family flushed to its own SST";
  Outcomes out = FlipEach(
      dir, [](const fs::path& p) { return p.filename() != "LOCK"; }, 6);
  EXPECT_GT(out.refused + out.found, 0) << "flips in the data must be noticed";
}

// RocksDB drops a damaged record at the MANIFEST's tail as torn. The tail
// holds the last flush: were its column families committed one by one, the
// idempotency records or the cursors alone could go back to empty (their
// WAL is gone) while the events stay whole, and nothing would see it. Every
// flush is one atomic group, so the events go back with them and the
// high-water mark refuses the start. Every 5th byte of the second half.
TEST_F(CorruptionTest, ADamagedManifestTailNeverHalfAppliesAFlush) {
  const std::string dir = dir_.Sub("ledger");
  ASSERT_NO_FATAL_FAILURE(LoadAndClose(dir, 60));
  fs::path manifest;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("MANIFEST-", 0) == 0) manifest = e.path();
  }
  ASSERT_FALSE(manifest.empty());
  const size_t size = fs::file_size(manifest);
  Outcomes out;
  for (size_t at = size / 2; at < size; at += 5) {
    const std::string copy = FlippedCopy(dir, manifest, at);
    Check(copy, absl::StrCat("MANIFEST at ", at, " of ", size), &out);
    fs::remove_all(copy);
    if (HasFatalFailure()) return;
  }
  std::printf("MANIFEST tail: %d refused, %d found by the scrub, %d harmless\n", out.refused,
              out.found, out.harmless);
}

// A crash image: acknowledged events that are only in the WAL.
TEST_F(CorruptionTest, AFlippedWalByteOfACrashedLedgerIsRefusedFoundOrHarmless) {
  const std::string live = dir_.Sub("live"), crashed = dir_.Sub("crashed");
  {
    auto l = Open(live);
    ASSERT_TRUE(l.ok()) << l.status();
    ASSERT_NO_FATAL_FAILURE(Load(l->get(), 40));
    ASSERT_TRUE((*l)->Close().ok());  // these in SSTs
    l = Open(live);
    ASSERT_TRUE(l.ok()) << l.status();
    ASSERT_NO_FATAL_FAILURE(Load(l->get(), 80));  // these only in the WAL
    ASSERT_NO_FATAL_FAILURE(Record(l->get()));
    fs::copy(live, crashed, fs::copy_options::recursive);  // kill -9, as far as the disk knows
    ASSERT_TRUE((*l)->Close().ok());
  }
  Outcomes out = FlipEach(
      crashed,
      [](const fs::path& p) { return p.extension() == ".log" && fs::file_size(p) > 10'000; }, 24);
  EXPECT_GT(out.refused + out.found, 0) << "flips in the events' records must be noticed";
}

}  // namespace
}  // namespace careloop::testing
