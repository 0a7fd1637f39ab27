/* The project's one list: intrusive, circular, doubly linked (libuv's
 * queue.h shape). A list is a list_t head; an element embeds a list_t node
 * and is found from it with LIST_ENTRY. A node that was list_init'ed or
 * list_remove'd points to itself, so list_linked() tells whether it is in a
 * list without a flag. */
#ifndef M2K_UTIL_LIST_H
#define M2K_UTIL_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct list {
    struct list *next, *prev;
} list_t;

#define LIST_ENTRY(node, type, field) ((type *)(void *)((char *)(node)-offsetof(type, field)))

/* Safe against removing `it` in the body. */
#define LIST_FOREACH_SAFE(it, nx, head)                                                            \
    for ((it) = (head)->next, (nx) = (it)->next; (it) != (head); (it) = (nx), (nx) = (it)->next)

static inline void list_init(list_t *l) {
    l->next = l->prev = l;
}

static inline bool list_empty(const list_t *head) {
    return head->next == head;
}

/* True while n is an element of some list (false after init or remove). */
static inline bool list_linked(const list_t *n) {
    return n->next != n;
}

static inline void list_insert_tail(list_t *head, list_t *n) {
    n->next = head;
    n->prev = head->prev;
    head->prev->next = n;
    head->prev = n;
}

static inline void list_insert_head(list_t *head, list_t *n) {
    n->prev = head;
    n->next = head->next;
    head->next->prev = n;
    head->next = n;
}

/* Unlinks n (a no-op for a node that is not linked) and re-inits it. */
static inline void list_remove(list_t *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_init(n);
}

/* The first element's node, or NULL when empty. */
static inline list_t *list_first(const list_t *head) {
    return head->next == head ? NULL : head->next;
}

#endif
