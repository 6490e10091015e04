// The room fingerprint's word list (docs/protocol.md section 6): 256 short,
// distinct English words, so that one byte picks one word. The order is part of
// the protocol: securechat/peer/words.py holds the same list, and a test checks
// that the two are identical. Never reorder or edit a word: every fingerprint
// shown so far would change.

export const WORDS = Object.freeze([
  "acid", "acorn", "actor", "adobe", "agent", "alarm", "album", "alley", "amber", "angel",
  "ankle", "apple", "apron", "arena", "arrow", "aspen", "atlas", "attic", "award", "axe",
  "bacon", "badge", "bagel", "baker", "bamboo", "banjo", "barn", "basil", "beach", "beard",
  "bell", "bench", "berry", "bike", "bingo", "bison", "blade", "blimp", "bloom", "board",
  "bonus", "boot", "bread", "brick", "bride", "broom", "bucket", "cabin", "cactus", "camel",
  "candle", "canoe", "canyon", "cargo", "carpet", "castle", "cedar", "chalk", "cherry", "chess",
  "chili", "cider", "cliff", "clock", "cloud", "clover", "coach", "cobra", "cocoa", "comet",
  "coral", "cotton", "couch", "crab", "crane", "crayon", "crown", "cube", "daisy", "dance",
  "delta", "denim", "desert", "diamond", "dingo", "disco", "dolphin", "donkey", "dragon", "drum",
  "duck", "dune", "eagle", "echo", "elbow", "elm", "ember", "engine", "falcon", "fancy",
  "farm", "feather", "fern", "ferry", "fiddle", "film", "flag", "flame", "flute", "fossil",
  "fox", "frog", "galaxy", "garden", "garlic", "gecko", "ghost", "giant", "ginger", "globe",
  "goat", "gold", "grape", "gravel", "guitar", "hammer", "harbor", "hazel", "helmet", "heron",
  "hippo", "honey", "hotel", "igloo", "iris", "island", "ivory", "jacket", "jaguar", "jasmine",
  "jelly", "jewel", "jungle", "kayak", "kettle", "kiwi", "koala", "ladder", "lagoon", "lemon",
  "lentil", "lily", "lion", "lizard", "llama", "lotus", "magnet", "mango", "maple", "marble",
  "meadow", "melon", "mint", "mirror", "moose", "motor", "mouse", "muffin", "museum", "nectar",
  "needle", "noodle", "nutmeg", "oasis", "ocean", "olive", "onion", "orbit", "orchid", "otter",
  "owl", "oyster", "paddle", "palace", "panda", "parrot", "pasta", "peanut", "pebble", "pepper",
  "piano", "pigeon", "pilot", "pine", "pirate", "planet", "plum", "pony", "potato", "prism",
  "pumpkin", "puzzle", "quartz", "quilt", "rabbit", "radar", "radish", "raven", "ribbon", "river",
  "robot", "rocket", "saddle", "salmon", "sandal", "saturn", "scarf", "shark", "sheep", "shell",
  "silver", "skate", "sled", "snail", "spider", "spoon", "squid", "stamp", "storm", "sugar",
  "sunset", "swan", "tango", "teapot", "tiger", "tomato", "tractor", "trumpet", "tulip", "tunnel",
  "turtle", "valley", "velvet", "violin", "volcano", "wagon", "walnut", "walrus", "whale", "willow",
  "window", "wizard", "yacht", "yogurt", "zebra", "zipper",
]);
