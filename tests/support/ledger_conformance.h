// The Ledger conformance suite. Every implementation of storage::Ledger runs
// it: the in-process LocalLedger (unit) and RemoteLedger against LedgerService
// in another careloopd process (the split integration test).
//
// EnvT: default-constructible, with absl::Status Start(), Ledger* ledger(),
// absl::Status Restart(), const NoteVerifier& verifier().
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "storage/merkle.h"
#include "storage/receipt.h"
#include "tests/support/ledger_helpers.h"
#include "tests/support/test_env.h"

namespace careloop::testing {

template <typename EnvT>
class LedgerConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = std::make_unique<EnvT>();
    absl::Status s = env_->Start();
    ASSERT_TRUE(s.ok()) << s;
  }
  storage::Ledger* L() { return env_->ledger(); }
  uint64_t Size() {
    auto h = L()->Head();
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? h->tree_size() : 0;
  }
  v1::Commit MustAppend(v1::AppendRequest r) {
    auto c = L()->Append(std::move(r));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : v1::Commit();
  }
  std::unique_ptr<EnvT> env_;
};

TYPED_TEST_SUITE_P(LedgerConformance);

TYPED_TEST_P(LedgerConformance, AppendAssignsGapFreeSeqsVersionsAndSignedHeads) {
  EXPECT_EQ(this->Size(), 0u);
  v1::AppendRequest batch = Event("referral/a", "A", "1");
  *batch.add_events() = Event("referral/b", "B", "2").events(0);
  *batch.add_events() = Event("referral/a", "C", "3").events(0);
  batch.mutable_events(0)->add_agencies("org.stmarys");
  batch.mutable_events(0)->set_subject("s-1");
  v1::Commit c = this->MustAppend(batch);
  EXPECT_EQ(c.first_seq(), 1u);
  EXPECT_EQ(c.last_seq(), 3u);
  ASSERT_EQ(c.stream_versions_size(), 3);
  EXPECT_EQ(c.stream_versions(0), 1u);
  EXPECT_EQ(c.stream_versions(1), 1u);
  EXPECT_EQ(c.stream_versions(2), 2u);
  EXPECT_FALSE(c.deduplicated());
  EXPECT_GE(c.head().tree_size(), 3u);
  EXPECT_TRUE(storage::VerifySignedHead(c.head(), this->env_->verifier()).ok());
  v1::Commit d = this->MustAppend(Event("referral/a", "D", "4"));
  EXPECT_EQ(d.first_seq(), 4u);
  EXPECT_EQ(d.stream_versions(0), 3u);
  auto read = this->L()->Read([] {
    v1::ReadRequest r;
    r.set_from_seq(1);
    r.set_include_payloads(true);
    return r;
  }());
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->events_size(), 4);
  for (int i = 0; i < 4; ++i) {
    const v1::Event& e = read->events(i);
    EXPECT_EQ(e.header().seq(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(e.payload(), std::to_string(i + 1));
    EXPECT_EQ(e.header().payload_sha256(), ToBytes(Sha256(e.payload())));
  }
  EXPECT_EQ(read->events(0).header().agencies(0), "org.stmarys");
  EXPECT_EQ(read->events(0).header().subject(), "s-1");
  EXPECT_EQ(read->events(2).header().stream_version(), 2u);
}

TYPED_TEST_P(LedgerConformance, FailedPreconditionWritesNothingOfTheBatch) {
  this->MustAppend(Event("referral/x"));
  v1::AppendRequest r = Event("referral/y");
  *r.add_events() = Event("referral/x").events(0);
  ExpectVersion(&r, "referral/x", 7);  // wrong: it is at 1
  auto c = this->L()->Append(r);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(c.status().message()).find("referral/x is at version 1, expected 7"),
            std::string::npos)
      << c.status();
  EXPECT_EQ(this->Size(), 1u);
  EXPECT_EQ(*this->L()->StreamVersion("referral/y"), 0u);
  EXPECT_EQ(*this->L()->StreamVersion("referral/x"), 1u);
}

TYPED_TEST_P(LedgerConformance, PreconditionsMustNotExistAndExpectedVersion) {
  v1::AppendRequest create = Event("referral/r1");
  MustNotExist(&create, "referral/r1");
  this->MustAppend(create);
  auto again = this->L()->Append(create);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(again.status().message()).find("exists (version 1)"), std::string::npos);
  v1::AppendRequest next = Event("referral/r1");
  ExpectVersion(&next, "referral/r1", 1);
  ExpectVersion(&next, "consent/s-1", 0);  // several preconditions, one on an empty stream
  EXPECT_EQ(this->MustAppend(next).stream_versions(0), 2u);
  EXPECT_EQ(this->L()->Append(next).status().code(), absl::StatusCode::kFailedPrecondition);
}

TYPED_TEST_P(LedgerConformance, OfConcurrentCreatesExactlyOneWins) {
  constexpr int kRacers = 16;
  std::vector<std::thread> threads;
  std::atomic<int> wins{0}, losses{0};
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      v1::AppendRequest r = Event("referral/contested", "Accepted", "by-" + std::to_string(i));
      ExpectVersion(&r, "referral/contested", 0);
      auto c = this->L()->Append(r);
      if (c.ok())
        ++wins;
      else if (c.status().code() == absl::StatusCode::kFailedPrecondition)
        ++losses;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(losses.load(), kRacers - 1);
  EXPECT_EQ(this->Size(), 1u);
}

TYPED_TEST_P(LedgerConformance, IdempotentRetryReturnsTheOriginalCommitAlsoAfterRestart) {
  v1::AppendRequest r = Event("referral/idem", "Submitted", "same");
  r.set_idempotency_key("hospital-1/msg-1");
  v1::Commit first = this->MustAppend(r);
  this->MustAppend(Event("referral/other"));
  v1::Commit retry = this->MustAppend(r);
  EXPECT_TRUE(retry.deduplicated());
  EXPECT_EQ(retry.first_seq(), first.first_seq());
  EXPECT_EQ(retry.last_seq(), first.last_seq());
  EXPECT_EQ(retry.head().tree_size(), first.head().tree_size());
  EXPECT_EQ(retry.head().checkpoint(), first.head().checkpoint());
  v1::AppendRequest changed = r;
  changed.mutable_events(0)->set_payload("different");
  auto conflict = this->L()->Append(changed);
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(this->Size(), 2u);
  ASSERT_TRUE(this->env_->Restart().ok());
  v1::Commit after = this->MustAppend(r);
  EXPECT_TRUE(after.deduplicated());
  EXPECT_EQ(after.first_seq(), first.first_seq());
  EXPECT_EQ(this->L()->Append(changed).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(this->Size(), 2u);
}

TYPED_TEST_P(LedgerConformance, CursorsMoveAtomicallyWithCompareAndSet) {
  EXPECT_FALSE(this->L()->GetCursor("consumer/org.a/main")->has_value());
  v1::AppendRequest r = Event("notification/org.a");
  v1::CursorUpdate* cu = r.add_cursor_updates();
  cu->set_name("consumer/org.a/main");
  cu->set_position(5);
  cu->set_expected_position(0);
  this->MustAppend(r);
  EXPECT_EQ(this->L()->GetCursor("consumer/org.a/main")->value(), 5u);
  // A stale expectation fails and writes nothing, not even the event.
  auto stale = this->L()->Append(r);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(this->Size(), 1u);
  // A cursor-only append.
  v1::AppendRequest move;
  v1::CursorUpdate* m = move.add_cursor_updates();
  m->set_name("consumer/org.a/main");
  m->set_position(9);
  m->set_expected_position(5);
  v1::Commit c = this->MustAppend(move);
  EXPECT_EQ(c.first_seq(), 0u);
  EXPECT_EQ(this->L()->GetCursor("consumer/org.a/main")->value(), 9u);
  ASSERT_TRUE(this->env_->Restart().ok());
  EXPECT_EQ(this->L()->GetCursor("consumer/org.a/main")->value(), 9u);
}

TYPED_TEST_P(LedgerConformance, TailWakesOnCommit) {
  this->MustAppend(Event("referral/t", "A"));
  std::unique_ptr<storage::TailStream> tail = this->L()->Tail(1, true);
  auto first = tail->Next(absl::Seconds(30));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 1u);
  // A waiting Next returns as soon as the commit lands, long before its timeout.
  auto waiting = std::async(std::launch::async, [&] { return tail->Next(absl::Seconds(60)); });
  this->MustAppend(Event("referral/t", "B", "woken"));
  auto second = waiting.get();
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].header().seq(), 2u);
  EXPECT_EQ((*second)[0].payload(), "woken");
  // Nothing new: an empty batch after the timeout.
  auto none = tail->Next(absl::Milliseconds(50));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  // Cancel wakes a pending Next.
  auto pending = std::async(std::launch::async, [&] { return tail->Next(absl::Seconds(60)); });
  tail->Cancel();
  EXPECT_EQ(pending.get().status().code(), absl::StatusCode::kCancelled);
}

TYPED_TEST_P(LedgerConformance, ReadsByStreamAgencyAndSubject) {
  for (int i = 0; i < 6; ++i) {
    v1::AppendRequest r =
        Event(i % 2 == 0 ? "referral/even" : "referral/odd", "E", std::to_string(i));
    r.mutable_events(0)->add_agencies(i % 3 == 0 ? "org.a" : "org.b");
    if (i >= 4) r.mutable_events(0)->set_subject("s-42");
    this->MustAppend(r);
  }
  v1::ReadStreamRequest rs;
  rs.set_stream("referral/even");
  rs.set_from_version(2);
  auto even = this->L()->ReadStream(rs);
  ASSERT_TRUE(even.ok());
  ASSERT_EQ(even->events_size(), 2);
  EXPECT_EQ(even->events(0).header().seq(), 3u);
  EXPECT_EQ(even->events(1).header().seq(), 5u);
  EXPECT_FALSE(even->more());
  // A page cut by its limit says that more follow; the last page does not.
  rs.set_from_version(1);
  rs.set_limit(2);
  EXPECT_TRUE(this->L()->ReadStream(rs)->more());
  rs.set_limit(3);
  EXPECT_FALSE(this->L()->ReadStream(rs)->more());
  v1::ReadIndexRequest ra;
  ra.set_agency("org.a");
  auto a = this->L()->ReadIndex(ra);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->events_size(), 2);
  EXPECT_EQ(a->events(0).header().seq(), 1u);
  EXPECT_EQ(a->events(1).header().seq(), 4u);
  ra.set_after_seq(1);
  EXPECT_EQ(this->L()->ReadIndex(ra)->events_size(), 1);
  v1::ReadIndexRequest rsub;
  rsub.set_subject("s-42");
  rsub.set_limit(1);
  auto s = this->L()->ReadIndex(rsub);
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->events_size(), 1);
  EXPECT_TRUE(s->more());
  EXPECT_EQ(s->events(0).header().seq(), 5u);
  // min_seq that has been reached is served at once.
  v1::ReadRequest rr;
  rr.set_from_seq(6);
  rr.set_min_seq(6);
  EXPECT_EQ(this->L()->Read(rr)->events_size(), 1);
  // Paging: limit and from.
  rr = v1::ReadRequest();
  rr.set_from_seq(2);
  rr.set_limit(3);
  auto page = this->L()->Read(rr);
  ASSERT_EQ(page->events_size(), 3);
  EXPECT_EQ(page->events(2).header().seq(), 4u);
  EXPECT_EQ(page->tree_size(), 6u);
}

TYPED_TEST_P(LedgerConformance, ProofsAndReceiptsVerifyOffline) {
  std::vector<v1::Commit> commits;
  for (int i = 0; i < 23; ++i) {
    v1::AppendRequest r =
        Event("referral/p" + std::to_string(i % 4), "E", "payload-" + std::to_string(i));
    if (i % 5 == 0) *r.add_events() = Event("referral/extra", "F", "more").events(0);
    commits.push_back(this->MustAppend(r));
  }
  const uint64_t size = this->Size();
  auto head = this->L()->Head();
  ASSERT_TRUE(head.ok());
  for (uint64_t seq = 1; seq <= size; ++seq) {
    auto receipt = this->L()->GetReceipt(seq);
    ASSERT_TRUE(receipt.ok()) << receipt.status();
    auto header = storage::VerifyReceipt(*receipt, this->env_->verifier(), std::nullopt);
    ASSERT_TRUE(header.ok()) << seq << ": " << header.status();
    EXPECT_EQ(header->seq(), seq);
    auto proof = this->L()->ProveInclusion(seq, 0);
    ASSERT_TRUE(proof.ok());
    std::vector<std::string> hashes(proof->hashes().begin(), proof->hashes().end());
    EXPECT_TRUE(storage::merkle::VerifyInclusion(seq - 1, size,
                                                 storage::merkle::HashLeaf(receipt->header_bytes()),
                                                 hashes, head->root_hash())
                    .ok());
  }
  // The sender checks its receipt against its own payload bytes.
  auto r0 = this->L()->GetReceipt(commits[3].first_seq());
  EXPECT_TRUE(storage::VerifyReceipt(*r0, this->env_->verifier(), std::string("payload-3")).ok());
  EXPECT_FALSE(storage::VerifyReceipt(*r0, this->env_->verifier(), std::string("payload-4")).ok());
  // Consistency between every pair of signed heads.
  for (size_t i = 0; i < commits.size(); ++i) {
    for (size_t j = i; j < commits.size(); j += 3) {
      const v1::SignedHead& h1 = commits[i].head();
      const v1::SignedHead& h2 = commits[j].head();
      auto cp = this->L()->ProveConsistency(h1.tree_size(), h2.tree_size());
      ASSERT_TRUE(cp.ok()) << cp.status();
      std::vector<std::string> hashes(cp->hashes().begin(), cp->hashes().end());
      EXPECT_TRUE(storage::merkle::VerifyConsistency(h1.tree_size(), h2.tree_size(), hashes,
                                                     h1.root_hash(), h2.root_hash())
                      .ok())
          << h1.tree_size() << "->" << h2.tree_size();
      auto stored = this->L()->Head(h2.tree_size());
      ASSERT_TRUE(stored.ok());
      EXPECT_EQ(stored->checkpoint(), h2.checkpoint());
    }
  }
  // A receipt under another key does not verify.
  auto other = VerifierFor(*TestSigner("careloop.test", 99));
  EXPECT_FALSE(storage::VerifyReceipt(*r0, *other, std::nullopt).ok());
}

TYPED_TEST_P(LedgerConformance, BadInputIsRefusedAndWritesNothing) {
  this->MustAppend(Event("referral/ok"));
  std::vector<std::pair<v1::AppendRequest, absl::StatusCode>> cases;
  cases.push_back({v1::AppendRequest(), absl::StatusCode::kInvalidArgument});
  cases.push_back({Event("Referral/Bad"), absl::StatusCode::kInvalidArgument});
  cases.push_back({Event("referral/ok", ""), absl::StatusCode::kInvalidArgument});
  cases.push_back({Event("referral/big", "E", std::string((1 << 20) + 1, 'x')),
                   absl::StatusCode::kInvalidArgument});
  v1::AppendRequest unset = Event("referral/ok");
  unset.add_preconditions()->set_stream("referral/ok");
  cases.push_back({unset, absl::StatusCode::kInvalidArgument});
  v1::AppendRequest badagency = Event("referral/ok");
  badagency.mutable_events(0)->add_agencies("NOT VALID");
  cases.push_back({badagency, absl::StatusCode::kInvalidArgument});
  for (auto& [req, code] : cases) {
    auto c = this->L()->Append(req);
    EXPECT_EQ(c.status().code(), code) << c.status();
    EXPECT_FALSE(std::string(c.status().message()).empty());
  }
  EXPECT_EQ(this->Size(), 1u);
  EXPECT_EQ(this->L()->ProveInclusion(0, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->L()->ProveInclusion(2, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->L()->ProveInclusion(1, 5).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(this->L()->ProveConsistency(0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->L()->GetReceipt(9).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->L()->Head(9).status().code(), absl::StatusCode::kOutOfRange);
  v1::ReadStreamRequest rs;
  rs.set_stream("BAD STREAM");
  EXPECT_EQ(this->L()->ReadStream(rs).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->L()->ReadIndex(v1::ReadIndexRequest()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(this->L()->GetCursor("").status().code(), absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(LedgerConformance, RestartKeepsEverythingAndContinues) {
  for (int i = 0; i < 10; ++i) this->MustAppend(Event("referral/r", "E", std::to_string(i)));
  auto before = this->L()->Head();
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(this->env_->Restart().ok());
  auto after = this->L()->Head();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->tree_size(), 10u);
  EXPECT_EQ(after->root_hash(), before->root_hash());
  EXPECT_EQ(after->log_id(), before->log_id());
  // Versions and pages read the same from disk after a restart as from what a
  // running ledger keeps in memory: before the next append and after it.
  auto page_of = [&](uint64_t from, uint32_t limit) {
    v1::ReadStreamRequest rs;
    rs.set_stream("referral/r");
    rs.set_from_version(from);
    rs.set_limit(limit);
    auto page = this->L()->ReadStream(rs);
    EXPECT_TRUE(page.ok()) << page.status();
    std::vector<uint64_t> seqs;
    if (page.ok()) {
      for (const auto& e : page->events()) seqs.push_back(e.header().seq());
      if (page->more()) seqs.push_back(0);  // 0: "more follow"
    }
    return seqs;
  };
  for (int round = 0; round < 2; ++round) {
    const uint64_t newest = 10 + round;
    EXPECT_EQ(*this->L()->StreamVersion("referral/r"), newest);
    EXPECT_EQ(*this->L()->StreamVersion("referral/none"), 0u);
    EXPECT_EQ(page_of(9, 1), (std::vector<uint64_t>{9, 0}));
    EXPECT_EQ(page_of(newest, 5), (std::vector<uint64_t>{newest}));
    EXPECT_EQ(page_of(newest + 1, 5), (std::vector<uint64_t>{}));
    EXPECT_EQ(page_of(newest - 1, 2), (std::vector<uint64_t>{newest - 1, newest}));
    if (round == 0) {
      v1::Commit c = this->MustAppend(Event("referral/r", "E", "10"));
      EXPECT_EQ(c.first_seq(), 11u);
      EXPECT_EQ(c.stream_versions(0), 11u);
    }
  }
  v1::Commit c = this->MustAppend(Event("referral/other", "E", "11"));
  EXPECT_EQ(c.first_seq(), 12u);
  EXPECT_EQ(*this->L()->StreamVersion("referral/other"), 1u);
  auto cp = this->L()->ProveConsistency(10, 12);
  std::vector<std::string> hashes(cp->hashes().begin(), cp->hashes().end());
  EXPECT_TRUE(
      storage::merkle::VerifyConsistency(10, 12, hashes, before->root_hash(), c.head().root_hash())
          .ok());
}

// Pages with payloads are cut by bytes (ledger.max_read_bytes, 3 MiB) as well
// as by count, always with at least one event and with `more` set, so that a
// page fits a gRPC client's default 4 MiB receive limit and a reader that
// reads on while `more` gets every event exactly once.
TYPED_TEST_P(LedgerConformance, LargePayloadPagesAreCutByBytesAndLoseNothing) {
  constexpr int kEvents = 10;
  constexpr size_t kPayload = 900 << 10;
  auto payload_of = [](int i) {
    std::string p(kPayload, '\0');
    for (size_t k = 0; k < p.size(); ++k) p[k] = static_cast<char>((k * 31 + i * 7) & 0xff);
    return p;
  };
  for (int i = 0; i < kEvents; i += 2) {
    v1::AppendRequest r;
    for (int k = i; k < i + 2; ++k) {
      v1::EventInput* e = r.add_events();
      *e = Event("referral/big", "E", payload_of(k)).events(0);
      e->add_agencies("org.big");
    }
    this->MustAppend(r);
  }
  constexpr size_t kClientLimit = 4 << 20;
  // Reads pages while `more`, checking each, and returns the seqs seen.
  auto page_through = [&](auto read_page) {
    std::vector<uint64_t> seqs;
    for (int pages = 0; pages <= kEvents; ++pages) {
      absl::StatusOr<v1::ReadResponse> page = read_page(seqs.empty() ? 0 : seqs.back());
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      EXPECT_LE(page->ByteSizeLong(), kClientLimit);
      EXPECT_GE(page->events_size(), page->more() ? 1 : 0);
      for (const v1::Event& e : page->events()) {
        const uint64_t seq = e.header().seq();
        seqs.push_back(seq);
        EXPECT_EQ(e.payload(), payload_of(static_cast<int>(seq - 1))) << seq;
      }
      if (!page->more()) break;
    }
    return seqs;
  };
  std::vector<uint64_t> all(kEvents);
  for (int i = 0; i < kEvents; ++i) all[i] = i + 1;
  EXPECT_EQ(page_through([&](uint64_t last) {
              v1::ReadRequest r;
              r.set_from_seq(last + 1);
              r.set_include_payloads(true);
              return this->L()->Read(r);
            }),
            all);
  EXPECT_EQ(page_through([&](uint64_t last) {
              v1::ReadStreamRequest r;
              r.set_stream("referral/big");
              r.set_from_version(last + 1);  // version == seq here
              r.set_include_payloads(true);
              return this->L()->ReadStream(r);
            }),
            all);
  EXPECT_EQ(page_through([&](uint64_t last) {
              v1::ReadIndexRequest r;
              r.set_agency("org.big");
              r.set_after_seq(last);
              r.set_include_payloads(true);
              return this->L()->ReadIndex(r);
            }),
            all);
  // The cut is by bytes: a first page holds some events, not all of them.
  v1::ReadRequest first;
  first.set_include_payloads(true);
  auto page = this->L()->Read(first);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_GT(page->events_size(), 1);
  EXPECT_LT(page->events_size(), kEvents);
  EXPECT_TRUE(page->more());
  // Without payloads the same events fit one page.
  first.set_include_payloads(false);
  page = this->L()->Read(first);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->events_size(), kEvents);
  EXPECT_FALSE(page->more());
  // A tail with payloads delivers every event once, in batches that fit.
  std::unique_ptr<storage::TailStream> tail = this->L()->Tail(1, true);
  std::vector<uint64_t> tailed;
  while (tailed.size() < all.size()) {
    auto batch = tail->Next(absl::Seconds(30));
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_FALSE(batch->empty());
    for (const v1::Event& e : *batch) tailed.push_back(e.header().seq());
  }
  EXPECT_EQ(tailed, all);
  tail->Cancel();
}

REGISTER_TYPED_TEST_SUITE_P(LedgerConformance, AppendAssignsGapFreeSeqsVersionsAndSignedHeads,
                            FailedPreconditionWritesNothingOfTheBatch,
                            PreconditionsMustNotExistAndExpectedVersion,
                            OfConcurrentCreatesExactlyOneWins,
                            IdempotentRetryReturnsTheOriginalCommitAlsoAfterRestart,
                            CursorsMoveAtomicallyWithCompareAndSet, TailWakesOnCommit,
                            ReadsByStreamAgencyAndSubject, ProofsAndReceiptsVerifyOffline,
                            BadInputIsRefusedAndWritesNothing, RestartKeepsEverythingAndContinues,
                            LargePayloadPagesAreCutByBytesAndLoseNothing);

}  // namespace careloop::testing
