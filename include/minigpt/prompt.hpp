// minigpt/prompt.hpp: the prompt builders and generation loops in one include.
//
// Chat templates, few-shot prompts and answer extraction (text layer); the scripted test session,
// chain-of-thought and self-consistency, self-critique and tool use (generate layer). Everything
// that generates is written against minigpt::text_session.
#pragma once

#include "minigpt/text/answer_parser.hpp"
#include "minigpt/text/chat_template.hpp"
#include "minigpt/text/few_shot.hpp"

#include "minigpt/generate/critique.hpp"
#include "minigpt/generate/reasoning.hpp"
#include "minigpt/generate/scripted_session.hpp"
#include "minigpt/generate/tool_use.hpp"
