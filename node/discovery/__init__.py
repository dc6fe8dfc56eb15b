"""New material (issue 14): unknown images found beside known ones, for authorised review.

During a cycle, unmatched images that sit next to matched ones (same page, same album or
directory, same site) become *candidates* with an explainable score; near-duplicates collapse
into one cluster; analysts confirm or reject them (`libra node candidates ...` and the node's
review API). A confirmation adds the candidate's hashes to the agency's private list (source
"discovered"); a rejection adds them to a negative list that suppresses future candidates and
matches of the same image. A flood guard holds the matches of a list entry that suddenly
matches far more than its history. Only hashes and URLs are kept, never an image; nothing of a
candidate leaves the node except counts per hoster and country in the signed report.
"""
