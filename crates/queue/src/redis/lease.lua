-- Leases the next batch of one queue, atomically.
--
-- KEYS[1] stream   one entry per push: fields `items` (framed blob) and `n` (item count)
-- KEYS[2] batches  hash: batch id -> "<first entry id> <last entry id> <item count>"
-- KEYS[3] leases   sorted set: batch id scored by its lease deadline (Unix ms, Redis clock)
-- ARGV[1] consumer group, ARGV[2] consumer name, ARGV[3] max items,
-- ARGV[4] visibility (ms), ARGV[5] id for a new batch, ARGV[6] max entries per batch
--
-- Returns false when nothing is available, else
-- {batch id, {entry ids}, {blobs}, {item counts}, redelivered (0/1)}.
-- Because the whole lease is one script, an entry is never delivered to the consumer
-- group without also being recorded in a batch.
local stream, batches, leases = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local max_items = tonumber(ARGV[3])
local max_entries = tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = string.format('%d', now + tonumber(ARGV[4]))

local function fields_of(entry)
  local blob, n = false, -1
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'items' then
      blob = fields[i + 1]
    elseif fields[i] == 'n' then
      n = tonumber(fields[i + 1]) or -1
    end
  end
  return blob, n
end

local function reply(id, entries, redelivered)
  local ids, blobs, counts = {}, {}, {}
  for i, e in ipairs(entries) do
    local blob, n = fields_of(e)
    ids[i] = e[1]
    blobs[i] = blob or ''
    counts[i] = blob and n or -1
  end
  return {id, ids, blobs, counts, redelivered}
end

-- 1. A batch whose lease expired is handed out again with the same id and entries.
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', string.format('(%d', now), 'LIMIT', 0, 1)
if #expired > 0 then
  local id = expired[1]
  local record = redis.call('HGET', batches, id)
  if record then
    local first, last = string.match(record, '^(%S+) (%S+)')
    local entries = redis.call('XRANGE', stream, first, last)
    redis.call('ZADD', leases, deadline, id)
    -- Move the pending entries to this consumer, so XPENDING shows who holds them.
    for i = 1, #entries, 1000 do
      local claim = {}
      for j = i, math.min(i + 999, #entries) do
        claim[#claim + 1] = entries[j][1]
      end
      claim[#claim + 1] = 'JUSTID'
      redis.call('XCLAIM', stream, group, consumer, 0, unpack(claim))
    end
    return reply(id, entries, 1)
  end
  -- A lease without its batch record cannot be re-formed; drop it.
  redis.call('ZREM', leases, id)
end

-- 2. Otherwise a new batch is formed from the oldest undelivered entries.
if redis.call('EXISTS', stream) == 0 then
  return false
end
-- Start at 0 so entries pushed before the group existed are delivered too.
redis.pcall('XGROUP', 'CREATE', stream, group, '0')
local cursor = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local name, last_delivered = nil, nil
  for i = 1, #g, 2 do
    if g[i] == 'name' then
      name = g[i + 1]
    elseif g[i] == 'last-delivered-id' then
      last_delivered = g[i + 1]
    end
  end
  if name == group then
    cursor = last_delivered
  end
end
if not cursor then
  return redis.error_reply('consumer group ' .. group .. ' missing on ' .. stream)
end

-- Look at what XREADGROUP would deliver, to take whole entries within max_items.
-- Entries hold at least one item each, so more than max_items entries never fit;
-- peek in small chunks so that a large max_items does not read the whole stream.
local limit = math.min(math.max(max_items, 1), max_entries)
local take, total, from, full = 0, 0, '(' .. cursor, false
while not full and take < limit do
  local want = math.min(32, limit - take)
  local chunk = redis.call('XRANGE', stream, from, '+', 'COUNT', want)
  for _, e in ipairs(chunk) do
    local _, n = fields_of(e)
    if n < 0 then
      n = 0
    end
    if take > 0 and total + n > max_items then
      full = true
      break
    end
    take = take + 1
    total = total + n
    from = '(' .. e[1]
  end
  if #chunk < want then
    break
  end
end
if take == 0 then
  return false
end

local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', take, 'STREAMS', stream, '>')
local entries = read and read[1] and read[1][2]
if not entries or #entries == 0 then
  return false
end
local id = ARGV[5]
redis.call('HSET', batches, id, entries[1][1] .. ' ' .. entries[#entries][1] .. ' ' .. string.format('%d', total))
redis.call('ZADD', leases, deadline, id)
return reply(id, entries, 0)
