"""Short, distinct, easy-to-say English words for session codes (256: one byte each)."""

WORDS = (
    "acid", "acorn", "actor", "agent", "alarm", "album", "alley", "amber", "angle", "apple",
    "apron", "arena", "arrow", "atlas", "attic", "autumn", "badge", "baker", "bamboo", "banjo",
    "barn", "basil", "beach", "beard", "bell", "bench", "berry", "bison", "blade", "blanket",
    "bloom", "board", "boat", "bonus", "boot", "bottle", "brain", "brass", "bread", "brick",
    "bridge", "brook", "brush", "bucket", "bugle", "cabin", "cable", "cactus", "camel", "candle",
    "canoe", "canyon", "carbon", "cargo", "carpet", "castle", "cedar", "cello", "chalk", "charm",
    "cherry", "chess", "chief", "cider", "cinema", "circle", "citrus", "clock", "cloud", "clover",
    "coach", "cobalt", "cocoa", "comet", "copper", "coral", "cotton", "cradle", "crane", "crater",
    "crown", "cube", "daisy", "dancer", "delta", "denim", "desert", "diamond", "dinner", "dolphin",
    "donkey", "dragon", "drum", "eagle", "echo", "elbow", "ember", "engine", "falcon", "feather",
    "fern", "ferry", "fiddle", "flame", "flute", "forest", "fossil", "fountain", "fox", "galaxy",
    "garden", "garlic", "gecko", "ginger", "glacier", "globe", "goose", "granite", "grape",
    "gravel", "guitar", "hammer", "harbor", "hazel", "helmet", "hermit", "hollow", "honey",
    "horizon", "husky", "igloo", "indigo", "iron", "island", "ivory", "jacket", "jaguar",
    "jasmine", "jelly", "jewel", "jungle", "kayak", "kettle", "kiwi", "koala", "ladder", "lagoon",
    "lantern", "laser", "lemon", "lentil", "lilac", "lion", "lizard", "lobster", "locket", "lotus",
    "magnet", "mango", "maple", "marble", "meadow", "melon", "meteor", "mint", "mirror", "mitten",
    "monkey", "moose", "mosaic", "mountain", "muffin", "nectar", "needle", "nickel", "noodle",
    "nutmeg", "oasis", "ocean", "olive", "onion", "opal", "orbit", "orchid", "otter", "owl",
    "paddle", "panda", "paper", "parrot", "pasta", "peach", "pebble", "pepper", "piano", "pickle",
    "pilot", "pine", "planet", "plum", "pocket", "poem", "pony", "poppy", "potato", "prism",
    "pumpkin", "puzzle", "quartz", "quill", "rabbit", "radar", "radish", "raven", "ribbon",
    "river", "robin", "rocket", "rose", "ruby", "saddle", "salmon", "sandal", "satin", "scarf",
    "shadow", "shell", "silver", "slate", "sloth", "snow", "sofa", "spider", "spoon", "spruce",
    "squash", "star", "stone", "storm", "sugar", "summit", "swan", "tango", "teapot", "tiger",
    "timber", "tomato", "topaz", "torch", "tower", "tractor", "tulip", "tunnel", "turtle",
    "umbrella", "valley",
)

assert len(WORDS) == len(set(WORDS)) == 256
